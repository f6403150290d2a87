"""`advisor`: recommend or predict a PTQ configuration from a fitted profile.

Exit codes: 0 an answer was found; 2 bad input (one line on stderr); 3 no configuration meets the targets
(the closest one and the tiers that fall short are printed).

argparse rather than typer here: the advisor runs inside deployment pipelines and typer/click cost about a
third of its cold-start budget (bench/advisor_latency.py). rich is imported only to print a table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from strata.errors import one_line_errors

SCALE_HELP = (
    "Targets are on the chance-adjusted scale of the law, Acc_adj = (Acc - chance) / (1 - chance), in [0, 1], "
    "averaged over the tier's tasks; with --relative they are fractions of the unquantized model's predicted value."
)
EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_FOUND = 0, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(EXIT_BAD_INPUT, f"advisor: error: {message} (see `{self.prog} --help`)\n")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _groups(text: str) -> list[int]:
    out = []
    for x in text.split(","):
        x = x.strip().lower()
        if x in ("per-channel", "pc", "-1"):
            out.append(-1)
        elif x:
            try:
                out.append(int(x))
            except ValueError:
                raise argparse.ArgumentTypeError(f"group sizes are integers or per-channel, got {x!r}") from None
    return out


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _target(text: str) -> tuple[str, float]:
    tier, _, value = text.partition("=")
    try:
        return tier.strip().upper(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"targets look like KR=0.6, got {text!r}") from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="catalog name (qwen3-8b), Hugging Face id (Qwen/Qwen3-8B) or local model folder")
    p.add_argument("--config", help="a local Hugging Face config.json (parameters counted from it)")
    p.add_argument("--params", type=float, help="parameters in billions, for a model outside the catalog")
    p.add_argument(
        "--family",
        help="model family: with --params (Qwen3, Llama-3, Llama-2, ...); with a local folder or --config, the "
        "family its profile's data name it by (strata-world) where that is not the config's model type",
    )
    p.add_argument(
        "--profile", help="profile name (qwen3, qwen3-base, llama, strata-world) or JSON path; default: by family"
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON (schema_version 2)")
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="the model's own unquantized scores (JSON: `calibrate evaluate --json` output, or "
        '{"tasks": {"arc_easy": {"mean": 0.801}}}); default: its published scores, where strata ships them',
    )
    p.add_argument("--no-baseline", action="store_true", help="predict from the law alone, ignoring any baseline")


def _deployment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--context", type=int, help="tokens per sequence: bill the KV cache and runtime allowance too")
    p.add_argument("--batch", type=int, default=1, help="concurrent sequences of --context tokens (default 1)")
    p.add_argument("--kv-dtype", default="bf16", help="KV-cache dtype: bf16 (default) or fp8")
    p.add_argument(
        "--engine", default="any", help="serving engine: vllm, sglang, transformers, or any (default: no restriction)"
    )


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-km", type=float, help="target for KM (memorization); " + "see scale above")
    p.add_argument("--min-ka", type=float, help="target for KA (application)")
    p.add_argument("--min-kr", type=float, help="target for KR (reasoning)")
    p.add_argument("--target", type=_target, action="append", default=[], metavar="TIER=VALUE", help="e.g. KR=0.6")
    p.add_argument("--relative", action="store_true", help="targets are fractions of the unquantized model's value")
    p.add_argument(
        "--memory-gb", type=float, help="memory budget, decimal GB: weights, or the whole bill with --context"
    )
    p.add_argument("--bits", type=_floats, default=None, help="bit-widths to search (default 3,4,8; 2 when asked)")
    p.add_argument("--group-sizes", type=_groups, default=None, help="default 32,64,128,256,per-channel")
    p.add_argument("--calib-samples", type=_ints, default=None, help="default 8,32,128,512,1024")
    p.add_argument("--allow-slow", action="store_true", help="with --engine: also configurations on a slow kernel path")
    _deployment_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="advisor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    rec = sub.add_parser(
        "recommend", help="the cheapest configuration meeting per-tier targets", description=SCALE_HELP
    )
    _model_args(rec)
    _grid_args(rec)
    rec.add_argument(
        "--emit",
        choices=("gptqmodel", "llmcompressor", "command"),
        help="print the recommendation as a GPTQModel QuantizeConfig, an llm-compressor recipe or a calibrate command",
    )
    rec.add_argument("--out", default="", help="with --emit command: the checkpoint folder to write")
    rec.add_argument(
        "--confidence",
        type=float,
        default=0.9,
        help="qualify when P(every targeted tier meets its target) >= this, over the fit's draws (default 0.9)",
    )
    rec.add_argument("--point-estimate", action="store_true", help="qualify on predicted means, ignore uncertainty")

    pre = sub.add_parser("predict", help="predicted per-tier and per-task accuracy of one configuration")
    _model_args(pre)
    pre.add_argument("--bits", type=float, required=True, help="bit-width (16 = unquantized)")
    pre.add_argument("--group-size", type=_groups, required=True, help="group size, or -1 / per-channel")
    pre.add_argument("--calib-samples", type=int, default=128, help="calibration samples (default 128)")
    pre.add_argument("--task", action="append", default=[], help="restrict per-task output (repeatable)")
    pre.add_argument("--extrapolate", action="store_true", help="predict outside the law's supported bits")
    _deployment_args(pre)

    fro = sub.add_parser(
        "frontier", help="every configuration no other beats on memory and accuracy at once", description=SCALE_HELP
    )
    _model_args(fro)
    _grid_args(fro)
    fro.add_argument("--plot", metavar="PNG", help="also draw the frontier (needs matplotlib: strata[fit])")

    sub.add_parser("models", help="list the model catalog")
    sub.add_parser("profiles", help="list the shipped profiles")
    return parser


def _model_kw(args: argparse.Namespace) -> dict[str, Any]:
    return {"params_b": args.params, "family": args.family, "config": args.config}


@one_line_errors("advisor")  # a UserError: one line on stderr, exit 2
def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from advisor import api, core
    from advisor.schema import Deployment
    from strata.errors import UserError

    if args.command == "models":
        return _print_models()
    if args.command == "profiles":
        return _print_profiles(api.shipped_profiles())
    info = api.resolve_model(args.model, **_model_kw(args))
    dep = Deployment(engine=args.engine, context=args.context, batch=args.batch, kv_dtype=args.kv_dtype)
    if args.baseline and args.no_baseline:
        raise UserError("--baseline and --no-baseline exclude each other; give one")
    query = api._query(info, args.profile, args.baseline, not args.no_baseline, requested=args.model)
    if args.command == "predict":
        if len(args.group_size) != 1:
            raise UserError("--group-size takes one value")
        pred = core.predict(
            query,
            args.bits,
            args.group_size[0],
            args.calib_samples,
            args.task,
            extrapolate=args.extrapolate,
            deployment=dep,
        )
        _emit(pred, args.json)
        return EXIT_OK
    targets = dict(args.target)
    for tier in ("km", "ka", "kr"):
        if getattr(args, f"min_{tier}") is not None:
            targets[tier.upper()] = getattr(args, f"min_{tier}")
    grid = {
        "memory_gb": args.memory_gb,
        "bits_grid": args.bits or None,
        "group_grid": args.group_sizes or core.DEFAULT_GROUPS,
        "calib_grid": args.calib_samples or core.DEFAULT_CALIB,
        "scale": core.RELATIVE if args.relative else core.ADJUSTED,
        "deployment": dep,
        "allow_slow": args.allow_slow,
    }
    if args.command == "frontier":
        front = core.frontier(query, targets, **grid)
        if args.plot:
            from advisor.plot import plot_frontier

            plot_frontier(front, args.plot)
        _emit(front, args.json)
        return EXIT_OK
    rec = core.recommend(query, targets, confidence=None if args.point_estimate else args.confidence, **grid)
    if args.emit:
        return _handover(rec, info.hf_id or info.name, args.emit, args.out)
    _emit(rec, args.json)
    return EXIT_OK if rec.found else EXIT_NOT_FOUND


def _handover(rec: Any, model: str, fmt: str, out: str) -> int:
    """The recommendation as the config another tool takes (stdout), or exit 3 with the reason on stderr."""
    from advisor.emit import Choice, emit

    if rec.recommendation is None:
        from advisor.render import shortfall_text

        short = shortfall_text(rec)
        sys.stderr.write(f"advisor: no configuration meets the targets ({short}); nothing to emit\n")
        return EXIT_NOT_FOUND
    c = rec.recommendation.config
    choice = Choice(model, int(c.bits), c.group_size, c.calib_samples, sym=c.sym, act_order=c.act_order)
    sys.stdout.write(emit(fmt, choice, out).rstrip("\n") + "\n")
    return EXIT_OK


def _emit(answer: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
        return
    from advisor import render

    render.show(answer)


def _print_models() -> int:
    from advisor.catalog import CATALOG

    for m in CATALOG:
        print(f"{m.name:<16} {m.family:<8} {m.params_b:>6g}B  {m.hf_id}")
    return EXIT_OK


def _print_profiles(shipped: dict[str, Any]) -> int:
    for name, path in sorted(shipped.items()):
        print(f"{name:<12} {path}")
    return EXIT_OK


def main() -> None:
    # The CLI needs no pydantic plugins; looking them up scans every installed distribution (~30 ms).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from strata.errors import guard

    raise SystemExit(guard("advisor", run))


if __name__ == "__main__":
    main()
