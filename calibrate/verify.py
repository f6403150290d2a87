"""``calibrate verify``: quantize a model with the configuration an advisor answer recommends, evaluate it, and
hold the measurement against the prediction and the targets.

Data flow:

    ANSWER.json ─► read (strata.verify: an advisor answer, or a plain configuration) ─► a one-configuration sweep
    spec ─► the sweep's own units, skipping what the store holds ─► the sweep's Worker (GPTQ, calibrate.sequential;
    evaluation, calibrate.evaluate) ─► rows committed to the store ─► rows read back ─► per tier: measured vs
    predicted, pass/fail (strata.verify.VerifyReport)

Choices made here, and why:
- The measurement is a sweep measurement: verify builds a ``SweepSpec`` for the one configuration (with
  ``--spec``, the sweep's own calibration text, GPTQ settings and evaluation protocol; else the sweep's defaults
  and the calibration text given, WikiText-2 unless files are named) and runs the sweep's units through the same
  ``Worker``. Its rows therefore carry the sweep's protocol and go into the same store: a configuration and seed a
  sweep (or an earlier verify) measured under that protocol, on the same calibration text, is read back, never
  recomputed, and what verify measures is there for the next fit.
- The configuration's sym and act-order come from the answer (the configuration as handed over); the rest of the
  quantizer settings from the protocol. Seeds are calibration draws ``--seed``, ``--seed``+1, ...
- The tier map is the one the answer's tiers were predicted over: each predicted tier names its tasks, and they
  must be tasks of the map evaluated (``--tier-map``, the spec's, else the checkpoint's own, else the project's),
  or verify stops and says so. A tier's measured value is the mean over exactly those tasks.
- Relative targets (``scale: relative``) are fractions of the unquantized model as measured: only then is the
  unquantized reference evaluated (once, then stored).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from calibrate.spec import ModelSpec, SweepSpec, load_spec
from calibrate.store import Store
from strata.errors import UserError, field_error, read_input
from strata.verify import (
    ANSWER_SCHEMA_VERSION,
    AdvisorAnswer,
    AnswerCandidate,
    Run,
    TierCheck,
    VerifiedConfig,
    VerifyConfig,
    VerifyReport,
    input_kind,
    tier_check,
)

DEFAULT_STORE = "strata-verify.sqlite"
WIKITEXT = ("wikitext", "wikitext-2-raw-v1")  # the advisor's --emit command default (advisor/emit.py)
ANSWER_HINT = "pass `advisor recommend --json` output, or a configuration (model, bits, group_size, calib_samples)"


class VerifyError(UserError):
    """An answer, configuration or option verify cannot use; one line naming the field and the fix (exit 2)."""


@dataclass
class Options:
    model: str | None = None
    spec: str | None = None
    store: str | None = None
    tier_map: str | None = None
    calib_files: list[str] = field(default_factory=list)
    dataset: str | None = None
    dataset_name: str | None = None
    seqlen: int | None = None
    limit: int | None = None
    eval_seed: int | None = None
    seeds: int = 1
    seed: int = 0
    family: str | None = None
    device: str | None = None
    trust_remote_code: bool = False


@dataclass
class Parsed:
    kind: str  # recommendation | prediction | configuration
    model: str  # a local folder, or the answer's model name
    config: VerifiedConfig | None  # sym/act_order None: the protocol's
    sym: bool | None
    act_order: bool | None
    targets: dict[str, float]
    scale: str
    candidate: AnswerCandidate | None
    hidden_size: int | None = None
    profile: str | None = None


# --- reading the input ------------------------------------------------------------------------------------------


def read(path: Path) -> Parsed:
    """An advisor answer or a configuration file, validated; one ``VerifyError`` line otherwise."""
    raw = read_input(path, VerifyError, "answer file", ANSWER_HINT)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{path} is not text; {ANSWER_HINT}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise VerifyError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)}); {ANSWER_HINT}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VerifyError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {ANSWER_HINT}"
            ) from None
    if not isinstance(data, dict):
        raise VerifyError(f"{path}: a {type(data).__name__}, not a JSON object; {ANSWER_HINT}")
    if input_kind(data) == "answer":
        return _answer(path, data)
    return _configuration(path, data)


def _answer(path: Path, data: dict[str, Any]) -> Parsed:
    if data.get("kind") not in ("recommendation", "prediction"):
        raise VerifyError(
            f"{path}: field 'kind' is {data.get('kind')!r}: an advisor answer verify reads is a recommendation "
            "(advisor recommend --json) or a prediction (advisor predict --json), each naming one configuration"
        )
    try:
        answer = AdvisorAnswer.model_validate(data)
    except ValidationError as exc:
        where, msg = field_error(exc)
        if where == "schema_version" and "schema_version" not in data:
            msg = f"missing; an advisor answer of schema_version {ANSWER_SCHEMA_VERSION} carries it"
        raise VerifyError(f"{path}: field '{where}': {msg.removeprefix('Value error, ')}; {ANSWER_HINT}") from None
    cand = answer.candidate()
    if cand is None:
        raise VerifyError(
            f"{path}: field 'recommendation' is null: the advisor found no configuration meeting the targets (what "
            "`advisor recommend` prints with exit 3); relax the targets, or verify its 'closest' configuration "
            "from a configuration file"
        )
    c = cand.config
    if c.method.upper() != "GPTQ":
        raise VerifyError(f"{path}: field 'recommendation.config.method' is {c.method!r}; verify quantizes with GPTQ")
    if c.bits != int(c.bits) or not 2 <= c.bits <= 8:
        raise VerifyError(f"{path}: field 'config.bits' is {c.bits:g}; GPTQ here quantizes to integer bits 2..8")
    config = VerifiedConfig(
        bits=int(c.bits), group_size=c.group_size, calib_samples=c.calib_samples, sym=c.sym, act_order=c.act_order
    )
    targets = dict(answer.targets)
    return Parsed(
        answer.kind, answer.model.name, config, c.sym, c.act_order, targets, answer.scale, cand,
        hidden_size=answer.model.hidden_size, profile=answer.profile.name if answer.profile else None,
    )  # fmt: skip


def _configuration(path: Path, data: dict[str, Any]) -> Parsed:
    try:
        cfg = VerifyConfig.model_validate(data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown (a configuration has model, bits, group_size, calib_samples; targets, scale, sym, act_order)"
        elif err["type"] == "missing":
            msg = "required"
        raise VerifyError(
            f"{path}: neither an advisor answer (no field 'kind') nor a configuration: field '{where}': {msg}; "
            "pass `advisor recommend --json` output"
        ) from None
    model = Path(cfg.model).expanduser()
    if not model.is_absolute():
        model = (path.parent / model).resolve()
    config = VerifiedConfig(
        bits=cfg.bits, group_size=cfg.group_size, calib_samples=cfg.calib_samples, sym=False, act_order=False
    )
    return Parsed("configuration", str(model), config, cfg.sym, cfg.act_order, dict(cfg.targets), cfg.scale, None)


def local_model(parsed: Parsed, given: str | None) -> Path:
    """The local model folder to quantize: ``--model``, else the one the input names, which must be local."""
    if given is None:
        where = Path(parsed.model).expanduser()
        if not (where.is_dir() and (where / "config.json").is_file()):
            named = "the answer's model" if parsed.kind != "configuration" else "the configuration's model"
            raise VerifyError(
                f"{named} {parsed.model} is not a local model folder (config.json); pass --model PATH, the local "
                "checkpoint folder of that model"
            )
        return where.resolve()
    path = Path(given).expanduser()
    if not path.is_dir():
        raise VerifyError(f"--model {given} is not a local folder; pass the local checkpoint folder of the model")
    if not (path / "config.json").is_file():
        raise VerifyError(f"--model {given} has no config.json; pass a Hugging Face model folder")
    if parsed.hidden_size is not None:
        width = _hidden_size(path)
        if width is not None and width != parsed.hidden_size:
            raise VerifyError(
                f"--model {given} has hidden size {width}, the answer's model {parsed.model} {parsed.hidden_size}; "
                "pass the folder of the model the answer is for"
            )
    return path.resolve()


def _hidden_size(path: Path) -> int | None:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for c in (cfg, cfg.get("text_config") or {}):
        if isinstance(c, dict) and isinstance(c.get("hidden_size"), int):
            return int(c["hidden_size"])
    return None


# --- the protocol -----------------------------------------------------------------------------------------------


def build_spec(parsed: Parsed, model: Path, opts: Options) -> SweepSpec:
    """The one-configuration sweep spec: ``--spec``'s protocol (or the sweep's defaults) with the flags over it."""
    from calibrate.spec import parse_spec

    if opts.seeds < 1:
        raise VerifyError(f"--seeds must be at least 1, got {opts.seeds}")
    base = load_spec(opts.spec) if opts.spec else None
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    assert parsed.config is not None
    cfg = parsed.config
    mspec = _model_spec(base, model, opts)
    cal = dict(data.get("calibration") or {})
    if opts.calib_files:
        cal.update(files=[str(Path(f).resolve()) for f in opts.calib_files], dataset=None, name=None)
    elif opts.dataset:
        cal.update(files=None, dataset=opts.dataset, name=opts.dataset_name)
    elif not cal.get("files") and not cal.get("dataset"):
        cal.update(files=None, dataset=WIKITEXT[0], name=WIKITEXT[1])
    if opts.seqlen is not None:
        cal["seqlen"] = opts.seqlen
    cal["seeds"] = [opts.seed + i for i in range(opts.seeds)]
    gptq = dict(data.get("gptq") or {})
    if parsed.sym is not None:
        gptq["sym"] = parsed.sym
    if parsed.act_order is not None:
        gptq["act_order"] = parsed.act_order
    ev = dict(data.get("evaluation") or {})
    for key, value in (("tier_map", opts.tier_map and str(Path(opts.tier_map).resolve())), ("limit", opts.limit),
                       ("seed", opts.eval_seed)):  # fmt: skip
        if value is not None:
            ev[key] = value
    data.update(
        name=f"verify-{mspec.label}",
        models=[mspec.model_dump()],
        method="gptq",
        bits=[cfg.bits],
        group_sizes=[cfg.group_size],
        calib_samples=[cfg.calib_samples],
        calibration=cal,
        gptq=gptq,
        evaluation=ev,
        store=str(Path(opts.store or (base.store if base is not None else DEFAULT_STORE)).resolve()),
        configs_per_batch=1,
    )
    if opts.device is not None:
        data["device"] = opts.device
    spec = parse_spec(data, opts.spec or "verify")
    parsed.config = cfg.model_copy(update={"sym": spec.gptq.sym, "act_order": spec.gptq.act_order})
    return spec


def _model_spec(base: SweepSpec | None, model: Path, opts: Options) -> ModelSpec:
    """The spec's entry for this model folder (its name and family in the store), else one for the folder."""
    if base is not None:
        for m in base.models:
            if Path(m.model).exists() and Path(m.model).resolve() == model:
                update: dict[str, Any] = {"model": str(model)}
                if opts.family:
                    update["family"] = opts.family
                return m.model_copy(update=update)
    return ModelSpec(model=str(model), family=opts.family, trust_remote_code=opts.trust_remote_code)


def tier_tasks(parsed: Parsed, tmap: Any, tmap_path: Path, evaluated: list[str]) -> dict[str, list[str]]:
    """Per tier, the tasks its value is the mean over: the answer's, which the map must hold, else the map's."""
    from strata.law import TIERS

    out: dict[str, list[str]] = {}
    predicted = parsed.candidate.tiers if parsed.candidate is not None else {}
    for tier in TIERS:
        if tier in predicted and predicted[tier].tasks:
            keys = [tmap.resolve(t) for t in predicted[tier].tasks]
            missing = [t for t, k in zip(predicted[tier].tasks, keys, strict=True) if k is None or k not in evaluated]
            if missing:
                raise VerifyError(
                    f"the answer's tier {tier} is predicted over {', '.join(predicted[tier].tasks)}; tier map "
                    f"{tmap_path} does not evaluate {', '.join(missing)}: pass --tier-map with the map the profile "
                    "was fitted on"
                )
            out[tier] = [k for k in keys if k is not None]
        else:
            tasks = [t for t in tmap.tasks_of(tier) if t in evaluated]
            if tasks:
                out[tier] = tasks
    for tier in parsed.targets:
        if tier not in out:
            raise VerifyError(f"a target is set for {tier}, but tier map {tmap_path} has no {tier} task")
    return out


# --- running ----------------------------------------------------------------------------------------------------


def verify(path: str | Path, opts: Options, display: Any = None) -> VerifyReport:
    """Measure the input's configuration (reusing what the store holds) and check it; see the module docstring."""
    from calibrate.evaluate import choose_tier_map, resolve_model
    from calibrate.sweep import (
        SOURCE,
        Config,
        LocalExecutor,
        SweepSummary,
        Unit,
        pending,
        preflight,
        stored,
        task_count,
    )
    from strata.tiermap import load_tier_map

    start = time.perf_counter()
    src = Path(path)
    parsed = read(src)
    model = local_model(parsed, opts.model)
    spec = build_spec(parsed, model, opts)
    mspec = spec.models[0]
    ref, is_local = resolve_model(mspec.model)
    tmap_path = choose_tier_map(ref, is_local, spec.evaluation.tier_map)
    tmap = load_tier_map(tmap_path)
    evaluated = [tmap.resolve(t) or t for t in spec.evaluation.tasks] if spec.evaluation.tasks else list(tmap.tasks)
    tiers = tier_tasks(parsed, tmap, tmap_path, evaluated)
    relative = parsed.scale == "relative" and bool(parsed.targets)
    preflight(spec)
    assert spec.calibration is not None and parsed.config is not None
    cfg, seeds = parsed.config, spec.calibration.seeds
    label, seqlen = mspec.label, spec.calibration.seqlen

    calib_source = spec.calibration.source()
    common: dict[str, Any] = {"source": SOURCE, "model": label}
    quantized: dict[str, Any] = {
        "source_table": spec.protocol(),
        "method": "GPTQ",
        "bits": float(cfg.bits),
        "group_size": cfg.group_size,
        "calib_samples": cfg.calib_samples,
        "calib_seqlen": seqlen,
        "calib_dataset": calib_source,  # a measurement on other calibration text is not this one
    }
    with Store.open(spec.store) as store:
        need = set(evaluated)

        def measured(seed: int) -> bool:
            return need <= {r.task for r in store.rows(**common, **quantized, calib_seed=seed)}

        runs = [Run(seed=s, reused=measured(s)) for s in seeds]
        todo = [Unit(mspec, "quantized", r.seed, cfg.calib_samples, (Config(cfg.bits, cfg.group_size),))
                for r in runs if not r.reused]  # fmt: skip
        if relative:
            todo = pending([Unit(mspec, "reference")], stored(store, spec), lambda _m: task_count(spec, mspec)) + todo
        summary = SweepSummary(str(spec.store), len(seeds) + relative, len(seeds) + relative - len(todo))
        if display is not None:
            display.on_start(summary)
        t0 = time.perf_counter()
        for rows in LocalExecutor(display.stage if display is not None else None).map(spec, todo):
            summary.rows_added += store.add(rows)
            summary.ran += 1
            summary.seconds = time.perf_counter() - t0
            if display is not None:
                display.on_config(summary, rows)
        seed_rows = [list(store.rows(**common, **quantized, calib_seed=s)) for s in seeds]
        per_seed = [_counts(rows, tmap, evaluated, f"seed {s}") for s, rows in zip(seeds, seed_rows, strict=True)]
        reference = None
        if relative:
            ref_rows = store.rows("bits >= 16", **common, source_table=spec.protocol(reference=True))
            reference = _counts(ref_rows, tmap, evaluated, "unquantized")

    chance = {t: s.chance for t, s in tmap.tasks.items()}
    predicted = parsed.candidate.tiers if parsed.candidate is not None else {}
    unquantized = {}
    if reference is not None:
        for tier, tasks in tiers.items():
            unquantized[tier] = tier_check(tasks, [reference], chance).measured
    checks: dict[str, TierCheck] = {}
    for tier, tasks in tiers.items():
        target = parsed.targets.get(tier)
        if target is not None and parsed.scale == "relative":
            target = target * unquantized[tier].mean
        checks[tier] = tier_check(tasks, per_seed, chance, predicted.get(tier), target)
    return VerifyReport(
        source=str(src),
        input=parsed.kind,  # type: ignore[arg-type]
        profile=parsed.profile,
        model=str(model),
        label=label,
        config=cfg,
        calibration=calib_source,
        seqlen=seqlen,
        protocol=spec.protocol(),
        store=str(spec.store),
        tier_map=str(tmap_path),
        scale=parsed.scale,  # type: ignore[arg-type]
        runs=runs,
        unquantized=unquantized,
        tiers=checks,
        passed=all(c.passes is not False for c in checks.values()),
        seconds=round(time.perf_counter() - start, 3),
    )


def _counts(rows: Any, tmap: Any, tasks: list[str], what: str) -> dict[str, tuple[int, int]]:
    """task -> (correct, items) of stored rows measured with the tier map's metric."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        spec = tmap.tasks.get(r.task)
        if spec is None or r.metric != spec.row_metric or r.correct is None or not r.n_items:
            continue
        out[r.task] = (r.correct, r.n_items)
    missing = [t for t in tasks if t not in out]
    if missing:  # the run above stores every task; a store edited by hand may not hold them
        raise VerifyError(f"the store holds no {what} measurement of {', '.join(missing)}; pass another --store")
    return out


# --- the human answer -------------------------------------------------------------------------------------------


def render(report: VerifyReport, console: Any) -> None:
    """The report as a rich table (stdout) and a verdict line."""
    from rich.table import Table

    c = report.config
    group = "per-channel" if c.group_size == -1 else f"G{c.group_size}"
    seeds = ", ".join(f"{r.seed}{' (stored)' if r.reused else ''}" for r in report.runs)
    title = (
        f"{report.label}: GPTQ W{c.bits} {group} Cb={c.calib_samples} {'sym' if c.sym else 'asym'}"
        f"{' act-order' if c.act_order else ''}, calibration seed(s) {seeds}"
    )
    table = Table(title=title, title_justify="left")
    checks = report.tiers.values()
    predicted = any(t.predicted is not None for t in checks)
    multi = len(report.runs) > 1
    cols = ["tier", "measured ± se"] + (["predicted [90%]", "inside"] if predicted else []) + ["target", "verdict"]
    if multi:
        cols += ["seed sd", "seed range"] + (["interval wider"] if predicted else [])
    for col in cols:
        table.add_column(col, justify="left" if col in ("tier", "verdict") else "right", no_wrap=True)
    for tier, t in report.tiers.items():
        row = [tier, f"{t.measured.mean:.3f} ± {t.stderr:.3f}"]
        if predicted:
            p = t.predicted
            pred = "—"
            if p is not None:
                lo = f"{p.lo:.3f}" if p.lo is not None else "?"
                hi = f"{p.hi:.3f}" if p.hi is not None else "?"
                pred = f"{p.point:.3f} [{lo}, {hi}]"
            row += [pred, _yes(t.inside)]
        row += [
            "—" if t.target is None else f"{t.target:.3f}",
            "—" if t.passes is None else ("pass" if t.passes else "FAIL"),
        ]
        if multi:
            s = t.spread
            row += ["—", "—"] if s is None else [f"{s.sd:.3f}", f"{s.range:.3f}"]
            if predicted:
                row.append("—" if s is None else _yes(s.interval_wider))
        table.add_row(*row)
    console.print(table)
    console.print(
        f"measured on {', '.join(f'{k}: ' + '+'.join(v.tasks) for k, v in report.tiers.items())} "
        f"(tier map {report.tier_map}); calibration {report.calibration}, seqlen {report.seqlen}; "
        f"store {report.store}",
        soft_wrap=True,
    )
    failed = [f"{k} {v.measured.mean:.3f} < {v.target:.3f}" for k, v in report.tiers.items() if v.passes is False]
    if failed:
        console.print(f"FAIL: {'; '.join(failed)} (exit {report.exit_code})")
    elif any(v.target is not None for v in report.tiers.values()):
        console.print("PASS: every target met")
    else:
        console.print("no targets: measured and predicted only")


def _yes(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "NO")
