"""A whole sweep per configuration vs the naive path, on the same model, calibration, configurations and items.

    python bench/sweep_vs_naive.py [--model DIR] [--device cpu|cuda] [--bits 2,3,4] [--groups 32,-1]
                                   [--calib-samples 32] [--seqlen 32] [--limit 40] [--threads T]

Naive path, per configuration: ``calibrate.deploy.quantize_checkpoint`` (GPTQModel loads the model, quantizes it
on the Cb calibration windows, packs and saves a real GPTQ checkpoint), then a fresh load of that checkpoint
(transformers + optimum + GPTQModel's kernels, through ``Evaluator(out)``) and lm-eval on it. One warm-up
configuration (export, reload, evaluate) runs first and is reported separately: it carries the one-time imports
(GPTQModel, optimum, lm-eval) and, unless GPTQMODEL_DISABLE_PACK_EXT=1, GPTQModel's C++ packing helper compile.

Ours: ``run_sweep`` of a spec with the same configurations into a temporary store, timed whole (process-level
imports are already warm from the naive warm-up). Its per-configuration figure is the whole wall time divided by
the number of quantized configurations, so it INCLUDES the model load (once), the calibration-set build, the
reference (unquantized) evaluation every sweep runs, planning and the store commits.

Same on both sides: model, calibration windows (``calibrate.calibdata``: files, seqlen, Cb, seed), bits and group
sizes, symmetric grid (GPTQModel's default; ``gptq.sym: true`` on ours), damp 0.01, no act-order, evaluation items
(the Evaluator's seeded subset, ``--limit`` per task; 0 = every item), float32 evaluation, batch size.
Not the same, by design of the two tools: GPTQModel's grid/zero-point and packing conventions and its bfloat16
non-quantized weights differ slightly from our fake-quantized float32 weights, so accuracies are compared, not
required identical: the figure is the max |difference| of the chance-adjusted tier means over all configurations.
3 bits: GPTQModel 7.6.0 packs 3-bit GPTQ zero-points 32 output columns at a time and fails on strata-world-s's
48-wide k/v projections (IndexError in pack_original), so the default grid is bits 2,4,8 x G 32,-1 (6
configurations); ``--bits 2,3,4`` runs, and a configuration the naive path cannot produce is reported and left out
of its mean.
Because the synthetic tasks saturate (chance-adjusted 1.0 down to 2 bits on strata-world-s), a continuous check is
printed too, outside every clock: mean next-token NLL on 64 held-out corpus windows for the naive path's reloaded
checkpoint and for our GPTQ of the same configuration (rerun on a fresh model with the sweep's settings).
Peak RSS is sampled per phase (/proc/self/statm every 20 ms) and reported with the process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
if "--naive-compile" not in sys.argv:
    # GPTQModel's torch kernel torch.compiles its dequantize on load (inductor: ~40 s the first time and ~13 s for
    # each new weight shape on this CPU); off by default, so the naive path is timed at its eager best. Our path
    # never compiles, so this changes nothing on our side.
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate.spec import parse_spec  # noqa: E402
from calibrate.store import Store  # noqa: E402
from calibrate.sweep import run_sweep  # noqa: E402
from strata.law import TIERS, normalize  # noqa: E402


class PeakRSS:
    """Peak resident set size of this process while the block runs, sampled from /proc/self/statm."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())

    @property
    def gib(self) -> float:
        return self.peak / 2**30


@contextlib.contextmanager
def kept_environment() -> Any:
    """Loading a GPTQ checkpoint imports GPTQModel (through transformers), which sets HF_HOME and other variables."""
    saved = dict(os.environ)
    try:
        from huggingface_hub import constants

        os.environ.setdefault("HF_HOME", str(constants.HF_HOME))  # else tokenicer points it at /tmp
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gptq_evaluator(out: Path, args: argparse.Namespace, bits: int) -> Any:
    """``Evaluator(out)`` (transformers + optimum + GPTQModel), with GPTQModel's kernel backend chosen explicitly."""
    from calibrate.evaluate import Evaluator

    class GptqEvaluator(Evaluator):
        def _load(self, trust_remote_code: bool) -> tuple[Any, Any]:
            if args.naive_backend == "auto":
                return super()._load(trust_remote_code)
            from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

            with contextlib.redirect_stdout(sys.stderr):  # GPTQModel's banner
                tok = AutoTokenizer.from_pretrained(self.model_ref)
                qcfg = GPTQConfig(bits=bits, backend=args.naive_backend)  # only its loading attributes are used
                model = AutoModelForCausalLM.from_pretrained(self.model_ref, dtype="float32", quantization_config=qcfg)
            return model.to(self.device).eval(), tok

    return GptqEvaluator(out, device=args.device, batch_size=args.batch_size, dtype="float32")


def heldout_ids(args: argparse.Namespace, tokenizer: Any) -> Any:
    """64 windows of the corpus drawn with another seed: a continuous fidelity measure beside saturating accuracy."""
    from calibrate import calibdata

    files = [args.calib_file]
    docs = calibdata.read_documents(files, None, None, "train", "text")
    source = calibdata.describe(files, None, None, "train", "text")
    return calibdata.build(tokenizer, docs, 64, args.seqlen, args.seed + 1000, source).ids


def mean_nll(model: Any, ids: Any) -> float:
    import torch

    with torch.no_grad():
        return float(model(input_ids=ids.to(next(model.parameters()).device), labels=ids).loss)


def ours_nll(args: argparse.Namespace, configs: list[tuple[int, int]]) -> tuple[dict[tuple, float], float]:
    """Untimed: our GPTQ (the sweep's settings) on a fresh model, held-out NLL per configuration and unquantized."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calibrate import calibdata, sequential
    from calibrate.gptq import QuantConfig
    from calibrate.rtn import restore

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(args.device).eval()
    files = [args.calib_file]
    docs = calibdata.read_documents(files, None, None, "train", "text")
    source = calibdata.describe(files, None, None, "train", "text")
    calib = calibdata.build(tok, docs, args.calib_samples, args.seqlen, args.seed, source)
    ids = heldout_ids(args, tok)
    results, _ = sequential.quantize_model(
        model, calib.ids, [QuantConfig(b, g, True) for b, g in configs], method="gptq", damp=args.damp,
        act_order=False, true_sequential=True, propagate="quantized", batch_size=args.calib_samples, offload="cpu",
    )  # fmt: skip
    out = {}
    for c, res in zip(configs, results, strict=True):
        originals = sequential.swap_in(model, res.weights)
        out[c] = mean_nll(model, ids)
        with torch.no_grad():
            restore(model, originals)
    return out, mean_nll(model, ids)


def tier_means_from_result(result: dict[str, Any]) -> dict[str, float]:
    return {t: v["mean"] for t, v in result["tiers"].items()}


def naive_config(args: argparse.Namespace, bits: int, group: int, work: Path) -> tuple[dict[str, float], dict]:
    """Quantize + save with GPTQModel, reload fresh, evaluate with lm-eval; seconds per stage and tier means."""
    import torch

    from calibrate.deploy import RECORD, quantize_checkpoint
    from calibrate.spec import CalibrationSpec, GptqSpec

    work.mkdir(parents=True, exist_ok=True)
    out = work / f"b{bits}-g{group}"
    t0 = time.perf_counter()
    summary = quantize_checkpoint(
        str(args.model), str(out), bits=bits, group_size=group, calib_samples=args.calib_samples,
        calibration=CalibrationSpec(files=[str(args.calib_file)], seqlen=args.seqlen, seeds=[args.seed]),
        gptq=GptqSpec(sym=True, act_order=False, damp=args.damp), device=args.device,
    )  # fmt: skip
    t1 = time.perf_counter()
    with kept_environment():
        ev = gptq_evaluator(out, args, bits)
        t2 = time.perf_counter()
        result = ev.evaluate(limit=args.limit or None, seed=args.eval_seed)
        t3 = time.perf_counter()
        nll = mean_nll(ev.model, heldout_ids(args, ev.tokenizer))  # untimed
    del ev
    if args.threads:
        torch.set_num_threads(args.threads)  # in case an import changed it
    record = json.loads((out / RECORD).read_text())["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    seconds = {
        "quantize+save": t1 - t0,
        "gptqmodel": record["quantize"],  # GPTQModel load + quantize + pack + save, inside quantize+save
        "reload": t2 - t1,
        "evaluate": t3 - t2,
        "total": t3 - t0,
        "nll": nll,
    }
    assert summary["calib_samples_effective"] == args.calib_samples
    return seconds, tier_means_from_result(result)


def sweep(args: argparse.Namespace, bits: list[int], groups: list[int], work: Path) -> tuple[float, dict, dict]:
    """run_sweep into a temporary store; (wall seconds, per-configuration timings, tier means per configuration)."""
    spec = parse_spec(
        {
            "name": "bench-sweep-vs-naive",
            "models": [{"model": str(args.model), "family": "strata-world"}],
            "method": "gptq",
            "bits": bits,
            "group_sizes": groups,
            "calib_samples": [args.calib_samples],
            "calibration": {"files": [str(args.calib_file)], "seqlen": args.seqlen, "seeds": [args.seed]},
            "gptq": {
                "damp": args.damp,
                "act_order": False,
                "sym": True,
                "true_sequential": True,
                "propagate": "quantized",
                "batch_size": args.calib_samples,
            },
            "evaluation": {"limit": args.limit or None, "seed": args.eval_seed, "batch_size": args.batch_size},
            "store": str(work / "bench.sqlite"),
            "device": args.device,
            "dtype": "float32",
        }
    )
    store_path = work / "bench.sqlite"
    start = time.perf_counter()
    run_sweep(spec, store_path=store_path)
    wall = time.perf_counter() - start
    timings: dict[tuple, dict] = {}
    counts: dict[tuple, dict[str, list[tuple[int, int, float]]]] = defaultdict(lambda: defaultdict(list))
    with Store.open(store_path) as store:
        for r in store.rows():
            key = ("ref", None) if r.group_size is None and r.calib_samples is None else (int(r.bits), r.group_size)
            timings[key] = r.extra["timings"]
            counts[key][r.tier].append((r.correct, r.n_items, r.chance))
    tiers = {}
    for key, by_tier in counts.items():
        tiers[key] = {}
        for tier, items in by_tier.items():
            total = sum(n for _, n, _ in items)
            tiers[key][tier] = sum(n / total * float(normalize(c / n, ch)) for c, n, ch in items)
    return wall, timings, tiers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "models" / "strata-world-s")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--bits", default="2,4,8", help="default 2,4,8: see the docstring on 3 bits")
    ap.add_argument("--groups", default="32,-1", help="group sizes, -1 = per channel")
    ap.add_argument("--calib-file", type=Path, default=ROOT / "examples" / "calib" / "strata-world.txt")
    ap.add_argument("--calib-samples", type=int, default=32, help="Cb")
    ap.add_argument("--seqlen", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="calibration seed")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--limit", type=int, default=40, help="items per task (seeded random subset); 0 = all")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64, help="evaluation batch size, both paths")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--naive-backend",
        default=None,
        help="GPTQModel kernel backend for the reload (default: torch on cpu, whose auto choice of the fused int4 "
        "kernel rejects per-channel groups of 192/288; auto on cuda)",
    )
    ap.add_argument("--naive-compile", action="store_true", help="let GPTQModel's torch kernel torch.compile")
    ap.add_argument("--skip-warmup", action="store_true", help="no separate warm-up export (imports then count)")
    args = ap.parse_args()
    args.model = args.model.resolve()
    if args.naive_backend is None:
        args.naive_backend = "torch" if args.device == "cpu" else "auto"

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    bits = [int(b) for b in args.bits.split(",")]
    groups = [int(g) for g in args.groups.split(",")]
    configs = [(b, g) for b in bits for g in groups]
    n = len(configs)
    print(
        f"model {args.model.name}, device {args.device}, {n} configurations (bits {bits} x G {groups}), "
        f"Cb {args.calib_samples} x seqlen {args.seqlen}, calibration seed {args.seed}, sym, damp {args.damp}, "
        f"limit {args.limit or 'all'} items/task (seed {args.eval_seed}), torch threads {torch.get_num_threads()}, "
        f"naive reload backend {args.naive_backend} (torch.compile {'on' if args.naive_compile else 'off'}), "
        f"GPTQMODEL_DISABLE_PACK_EXT={os.environ.get('GPTQMODEL_DISABLE_PACK_EXT', '(unset)')}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="bench-svn-") as tmp:
        work = Path(tmp)
        if not args.skip_warmup:
            with PeakRSS() as rss_w:
                t = time.perf_counter()
                warm, _ = naive_config(args, *configs[0], work / "warmup")
                warm_wall = time.perf_counter() - t
            print(
                f"naive warm-up (B={configs[0][0]} G={configs[0][1]}, one-time imports included): {warm_wall:.1f} s "
                f"(quantize+save {warm['quantize+save']:.1f}, reload {warm['reload']:.1f}, "
                f"evaluate {warm['evaluate']:.1f}); peak RSS {rss_w.gib:.2f} GiB",
                flush=True,
            )

        with PeakRSS() as rss_s:
            sweep_wall, timings, ours = sweep(args, bits, groups, work / "sweep")
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"ours: run_sweep wall {sweep_wall:.1f} s for {n} configurations + reference", flush=True)

        naive: dict[tuple, dict[str, float]] = {}
        theirs: dict[tuple, dict[str, float]] = {}
        failed: dict[tuple, str] = {}
        with PeakRSS() as rss_n:
            for b, g in configs:
                try:
                    naive[(b, g)], theirs[(b, g)] = naive_config(args, b, g, work / "naive")
                except Exception as exc:  # e.g. GPTQModel's 3-bit packing needs out_features % 32 == 0
                    failed[(b, g)] = str(exc).strip().splitlines()[0][:200]
                    print(f"naive B={b} G={g}: FAILED ({failed[(b, g)]})", flush=True)
                    continue
                s = naive[(b, g)]
                print(
                    f"naive B={b} G={g}: {s['total']:.1f} s (quantize+save {s['quantize+save']:.1f}, "
                    f"reload {s['reload']:.1f}, evaluate {s['evaluate']:.1f})",
                    flush=True,
                )
        naive_wall = sum(s["total"] for s in naive.values())

    # --- figures -----------------------------------------------------------------------------------------------
    ours_per = sweep_wall / n
    naive_per = naive_wall / max(len(naive), 1)
    if failed:
        print(f"\nnaive failed on {len(failed)} of {n} configurations; its s/config is over the {len(naive)} that ran")
    print()
    print(f"s/config  naive {naive_per:.2f}   ours {ours_per:.2f}   ratio {naive_per / ours_per:.1f}x")

    print("\nnaive per-stage split (s/config, mean over configurations):")
    for stage in ("quantize+save", "gptqmodel", "reload", "evaluate"):
        m = statistics.mean(s[stage] for s in naive.values())
        label = "  of which GPTQModel load+quantize+pack+save" if stage == "gptqmodel" else stage
        print(f"  {label:<44} {m:8.3f}  {m / naive_per:6.1%}")

    print("\nours per-stage split (s/config; whole-sweep costs spread over the configurations):")
    qt = [timings[c] for c in configs]
    ref = timings.get(("ref", None), {})
    batch = qt[0].get("quantize_batch", 1) or 1
    n_batches = math.ceil(n / batch)
    stages = {
        "model load": qt[0].get("model_load_s", 0.0) / n,
        "reference eval": ref.get("evaluate_s", 0.0) / n,
        "calibration": sum(t.get("calibration_s", 0.0) / (t.get("quantize_batch", 1) or 1) for t in qt) / n,
    }
    for s in ("capture", "hessian", "solve", "propagate"):
        stages[f"gptq {s}"] = sum(t.get(f"quantize_{s}_s", 0.0) / (t.get("quantize_batch", 1) or 1) for t in qt) / n
    stages["swap"] = statistics.mean(t.get("swap_s", 0.0) for t in qt)
    stages["evaluate"] = statistics.mean(t.get("evaluate_s", 0.0) for t in qt)
    accounted = sum(stages.values())
    stages["rest (plan, store, Python)"] = ours_per - accounted
    for stage, v in stages.items():
        print(f"  {stage:<27} {v:8.3f}  {v / ours_per:6.1%}")
    print(f"  (GPTQ: {n} configurations quantized in {n_batches} batch(es) of {batch})")

    print("\naccuracy, chance-adjusted tier means (naive | ours):")
    print(f"  {'config':<10} " + "  ".join(f"{t:>15}" for t in TIERS) + "   max|diff|")
    worst = 0.0
    diffs = []
    for c in [c for c in configs if c in theirs]:
        row = []
        local = 0.0
        for t in TIERS:
            a, o = theirs[c].get(t, float("nan")), ours.get(c, {}).get(t, float("nan"))
            row.append(f"{a:+.3f} | {o:+.3f}")
            local = max(local, abs(a - o))
            diffs.append(abs(a - o))
        worst = max(worst, local)
        print(f"  B={c[0]} G={c[1]:<4} " + "  ".join(f"{x:>15}" for x in row) + f"   {local:.3f}")
    if ("ref", None) in ours:
        r = ours[("ref", None)]
        print("  unquantized " + "  ".join(f"{r.get(t, float('nan')):+.3f}" for t in TIERS))
    items = f"{args.limit} items/task" if args.limit else "all items"
    print(
        f"max |difference| over configurations and tiers: {worst:.3f} (mean {statistics.mean(diffs):.3f}; "
        f"{items}; the two quantizers' grid/packing conventions differ, so equal means close, not identical)"
    )

    nll_ours, nll_ref = ours_nll(args, [c for c in configs if c in naive])
    print(
        f"\nheld-out NLL (64 corpus windows of {args.seqlen} tokens, seed {args.seed + 1000}; untimed), "
        f"unquantized {nll_ref:.4f}:"
    )
    for c in nll_ours:
        a, o = naive[c]["nll"], nll_ours[c]
        print(f"  B={c[0]} G={c[1]:<4} naive {a:.4f}  ours {o:.4f}  (ours - naive {o - a:+.4f})")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    line = f"\npeak RSS: ours (sweep phase) {rss_s.gib:.2f} GiB, naive (timed phase) {rss_n.gib:.2f} GiB"
    if not args.skip_warmup:
        line += f", naive warm-up {rss_w.gib:.2f} GiB"
    print(line + f"; process ru_maxrss {peak:.2f} GiB")
    if args.device == "cuda":
        print(f"peak cuda memory allocated (whole process): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
