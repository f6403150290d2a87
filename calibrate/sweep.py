"""The sweep engine: plan units from a spec, skip what the store holds, run the rest, commit every configuration.

Data flow (one process, the local executor):

    spec ─► plan() ─► units ─► pending() drops stored configurations ─► Worker.run(unit) yields the rows of one
    configuration at a time ─► the driver commits them in one transaction ─► the next configuration

- A *unit* (see ``calibrate.spec``) is one model's unquantized reference, or one (model, seed, Cb) with the (B, G)
  configurations that share its calibration set: they are quantized together (``calibrate.sequential``), then each
  is swapped into the loaded model, evaluated per tier (``calibrate.evaluate``) and restored.
- Only the driver writes the store, and a configuration's rows (one per task) go in one transaction keyed by what
  identifies them, so a kill at any moment (kill -9 included) loses at most the configuration in flight, and a
  rerun of the same command recomputes nothing stored. Workers return rows; remote executors
  (``calibrate.executors``) plug in at ``Executor``.
- Each configuration's rows carry everything a refit needs: model, parameters, family, method, B, G, Cb stated and
  effective, calibration source, seqlen and seed, per-task items and correct counts, timings per stage, library
  versions, the spec hash.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from calibrate.machine import library_versions, resolve_device
from calibrate.spec import ModelSpec, SweepSpec
from calibrate.store import Store
from strata.errors import StrataError, UserError, first_line
from strata.law import PER_CHANNEL, group_size_problem
from strata.rows import ResultRow

SOURCE = "strata-sweep"
Progress = Callable[[str], None]
Stage = Literal["load", "calibrate", "quantize", "evaluate"]


class SweepError(UserError):
    """A sweep that cannot go on; one line naming the input and the fix. Everything stored so far stays stored."""


class UnitError(StrataError):
    """A unit that failed inside a library (torch, transformers, lm-eval): the model, the stage, the task where
    there is one, and the cause, in one line. The sweep goes on with the other units and exits 1."""

    def __init__(self, model: str, stage: Stage, cause: BaseException | str, task: str | None = None) -> None:
        self.model, self.stage, self.task = model, stage, task
        why = cause if isinstance(cause, str) else first_line(cause)
        super().__init__(f"model {model}: {stage}" + (f" (task {task})" if task else "") + f": {why}")


@dataclass(frozen=True)
class UnitFailure:
    unit: Unit
    attempts: int
    error: str

    def describe(self) -> str:
        return f"failed: {self.unit.describe()} after {self.attempts} attempt(s): {self.error}"


class UnitsFailed(StrataError):
    """Units that failed every attempt; everything else has been committed. One line per unit (exit 1)."""

    def __init__(self, failures: list[UnitFailure]) -> None:
        self.failures = failures
        super().__init__("\n".join(f.describe() for f in failures))


@contextlib.contextmanager
def stage(model: str, name: Stage) -> Iterator[None]:
    """Anything a library raises in this stage becomes a ``UnitError``; our own errors pass through as they are."""
    try:
        yield
    except (UserError, UnitError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise UnitError(model, name, exc, getattr(exc, "task", None)) from exc


@dataclass(frozen=True)
class Config:
    """One quantization configuration of a unit (hashable, so stored ones can be subtracted)."""

    bits: int
    group_size: int  # PER_CHANNEL (-1) = per channel


@dataclass(frozen=True)
class Unit:
    model: ModelSpec
    kind: Literal["reference", "quantized"]
    seed: int | None = None
    calib_samples: int | None = None
    configs: tuple[Config, ...] = ()

    def describe(self) -> str:
        if self.kind == "reference":
            return f"{self.model.label} unquantized"
        cb = f" Cb={self.calib_samples} seed={self.seed}" if self.calib_samples is not None else ""
        return f"{self.model.label}{cb}: {len(self.configs)} configuration(s)"

    @property
    def size(self) -> int:
        """Configurations (evaluations) in the unit."""
        return 1 if self.kind == "reference" else len(self.configs)


def plan(spec: SweepSpec) -> list[Unit]:
    """Every unit of the spec: per model the reference, then each (seed, Cb) with the whole (B, G) grid."""
    grid = tuple(Config(b, g) for b in spec.bits for g in spec.group_sizes)
    units: list[Unit] = []
    for m in spec.models:
        units.append(Unit(m, "reference"))
        if spec.method == "rtn":
            units.append(Unit(m, "quantized", configs=grid))
            continue
        assert spec.calibration is not None
        for seed in spec.calibration.seeds:
            for cb in spec.calib_samples:
                units.append(Unit(m, "quantized", seed, cb, grid))
    return units


# --- what the store already holds ------------------------------------------------------------------------------


def _ident(model: str, bits: float | None, group: int | None, cb: int | None, seed: int | None) -> tuple[Any, ...]:
    return (model, None if bits is None else float(bits), group, cb, seed)


def stored(store: Store, spec: SweepSpec) -> dict[tuple[Any, ...], int]:
    """Tasks stored per configuration identity (model, bits, G, Cb, seed) under this spec's protocol."""
    cal = spec.calibration
    uses_calib = cal is not None and spec.method == "gptq"
    seqlen = cal.seqlen if uses_calib and cal is not None else None
    source = cal.source() if uses_calib and cal is not None else ""  # rows on other calibration text are not these
    out: dict[tuple[Any, ...], int] = {}
    for model, bits, group, cb, seed, n in [
        *store.task_counts(SOURCE, spec.protocol(reference=True)),
        *store.task_counts(
            SOURCE, spec.protocol(), method=spec.method.upper(), calib_seqlen=seqlen, calib_dataset=source
        ),
    ]:
        key = _ident(model, None if bits >= 16 else bits, group, cb, seed)
        out[key] = out.get(key, 0) + n
    return out


def pending(units: Iterable[Unit], done: dict[tuple[Any, ...], int], n_tasks: Callable[[ModelSpec], int]) -> list[Unit]:
    """Units with their stored configurations removed; units left empty are dropped."""
    out = []
    for u in units:
        need = n_tasks(u.model)
        if u.kind == "reference":
            if done.get(_ident(u.model.label, None, None, None, None), 0) < need:
                out.append(u)
            continue
        todo = tuple(
            c
            for c in u.configs
            if done.get(_ident(u.model.label, c.bits, c.group_size, u.calib_samples, u.seed), 0) < need
        )
        if todo:
            out.append(Unit(u.model, u.kind, u.seed, u.calib_samples, todo))
    return out


def task_count(spec: SweepSpec, model: ModelSpec) -> int:
    """How many tasks each configuration of ``model`` stores (the tier map, or the spec's task subset)."""
    from calibrate.evaluate import choose_tier_map, resolve_model
    from strata.tiermap import load_tier_map

    ref, is_local = resolve_model(model.model)
    tmap = load_tier_map(choose_tier_map(ref, is_local, spec.evaluation.tier_map))
    if spec.evaluation.tasks:
        return len({tmap.resolve(t) for t in spec.evaluation.tasks} - {None})
    return len(tmap.tasks)


# --- running units -------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    evaluator: Any
    info: dict[str, Any]
    documents: list[str] | None = None
    load_s: float = 0.0
    calib: dict[int, Any] = field(default_factory=dict)  # seed -> CalibrationSet of the largest Cb built so far


class Worker:
    """Runs units in one process, keeping the last model loaded (with its tasks and calibration text) between units."""

    def __init__(self, spec: SweepSpec, log: Progress | None = None) -> None:
        self.spec = spec
        self.log = log or (lambda _msg: None)
        self.device = resolve_device(spec.device)
        self._loaded: tuple[str, _Loaded] | None = None
        self.versions = library_versions()
        self.spec_hash = spec.content_hash()

    def run(self, unit: Unit) -> Iterator[list[ResultRow]]:
        """The rows of each configuration of ``unit``, one configuration at a time."""
        loaded = self._load(unit.model)
        if unit.kind == "reference":
            self.log(f"{unit.model.label} unquantized: evaluating")
            yield self._evaluate(unit, loaded, None, None, {})
            return
        import torch

        from calibrate import sequential
        from calibrate.gptq import QuantConfig
        from calibrate.rtn import restore

        label = unit.model.label
        with stage(label, "calibrate"):
            calib, calib_s = self._calibration(loaded, unit) if self.spec.method == "gptq" else (None, 0.0)
        for batch in self._batches(unit, loaded, calib):
            qconfigs = [QuantConfig(c.bits, c.group_size, self.spec.gptq.sym) for c in batch]
            self.log(f"{unit.describe()}: quantizing {len(batch)} together")
            g = self.spec.gptq
            with stage(label, "quantize"):
                results, timings = sequential.quantize_model(
                    loaded.evaluator.model,
                    calib.ids if calib is not None else None,
                    qconfigs,
                    method=self.spec.method,
                    damp=g.damp,
                    block_size=g.block_size,
                    act_order=g.act_order,
                    true_sequential=g.true_sequential,
                    propagate=g.propagate,
                    batch_size=g.batch_size,
                    offload="cpu",
                    progress=self.log,
                )
            shared = {f"quantize_{k}_s": round(v, 4) for k, v in timings.items()}
            shared["quantize_batch"] = len(batch)
            if calib is not None:
                shared["calibration_s"] = round(calib_s, 4)
            for cfg, res in zip(batch, results, strict=True):
                self.log(f"{unit.model.label} B={cfg.bits} G={cfg.group_size}: evaluating")
                start = time.perf_counter()
                originals = sequential.swap_in(loaded.evaluator.model, res.weights)
                try:
                    rows = self._evaluate(unit, loaded, cfg, calib, {**shared, "swap_s": time.perf_counter() - start})
                    for row in rows:  # MoE experts no calibration token reached: RTN (calibrate.sequential)
                        row.extra["experts_rtn_fallback"] = res.experts_rtn_fallback
                finally:
                    with torch.no_grad():
                        restore(loaded.evaluator.model, originals)
                yield rows
            del results

    # --- pieces -----------------------------------------------------------------------------------------------

    def _load(self, model: ModelSpec) -> _Loaded:
        if self._loaded is not None and self._loaded[0] == model.model:
            return self._loaded[1]
        self._loaded = None  # free the previous model before loading the next
        from calibrate.evaluate import EvaluateError, Evaluator

        self.log(f"loading {model.label}")
        start = time.perf_counter()
        ev = self.spec.evaluation
        try:
            with stage(model.label, "load"):
                evaluator = Evaluator(
                    model.model,
                    ev.tier_map,
                    tasks=ev.tasks,
                    device=self.device,
                    batch_size=ev.batch_size,
                    dtype=self.spec.dtype,
                    trust_remote_code=model.trust_remote_code,
                    datasets=ev.datasets,
                )
        except EvaluateError as exc:
            raise SweepError(f"model {model.label}: {exc}") from None
        check_group_sizes(evaluator.model, self.spec.group_sizes, model.label)
        with stage(model.label, "load"):
            info = _model_info(evaluator.model, model)
        loaded = _Loaded(evaluator, info, load_s=time.perf_counter() - start)
        self._loaded = (model.model, loaded)
        return loaded

    def _calibration(self, loaded: _Loaded, unit: Unit) -> tuple[Any, float]:
        from calibrate import calibdata

        cal = self.spec.calibration
        assert cal is not None and unit.seed is not None and unit.calib_samples is not None
        files = [Path(f) for f in cal.files] if cal.files else None
        source = cal.source()
        start = time.perf_counter()
        if loaded.documents is None:
            loaded.documents = calibdata.read_documents(files, cal.dataset, cal.name, cal.split, cal.text_field)
        # Build once per seed for the spec's largest Cb; smaller Cb are its nested prefixes (see calibdata).
        if unit.seed not in loaded.calib:
            tok = loaded.evaluator.tokenizer
            loaded.calib[unit.seed] = calibdata.build(
                tok, loaded.documents, max(self.spec.calib_samples), cal.seqlen, unit.seed, source
            )
        full = loaded.calib[unit.seed]
        calib = full.take(unit.calib_samples)
        if calib.effective < unit.calib_samples and not cal.allow_short:
            raise SweepError(
                f"calibration source {source} yields {calib.effective} windows of {cal.seqlen} tokens, fewer than "
                f"Cb={unit.calib_samples}; add text, lower calibration.seqlen, or set calibration.allow_short: true"
            )
        return calib, time.perf_counter() - start

    def _batches(self, unit: Unit, loaded: _Loaded, calib: Any) -> list[tuple[Config, ...]]:
        n = self.spec.configs_per_batch
        if n == "auto":
            n = auto_batch(loaded.evaluator.model, calib.ids.shape if calib is not None else (0, 0), self.device)
        return [unit.configs[i : i + n] for i in range(0, len(unit.configs), n)]

    def _evaluate(
        self, unit: Unit, loaded: _Loaded, cfg: Config | None, calib: Any, timings: dict[str, Any]
    ) -> list[ResultRow]:
        ev = self.spec.evaluation
        ref = cfg is None
        with stage(unit.model.label, "evaluate"):
            result = loaded.evaluator.evaluate(limit=ev.limit, seed=ev.seed)
        info = loaded.info
        cal = self.spec.calibration
        uses_calib = not ref and self.spec.method == "gptq"
        extra = {
            "spec_hash": self.spec_hash,
            "spec_name": self.spec.name,
            "model_path": unit.model.model,
            "versions": self.versions,
            "device": self.device,
            "dtype": self.spec.dtype,
            "timings": {
                "model_load_s": round(loaded.load_s, 3),
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()},
                "evaluate_s": result["evaluation"]["seconds"],
            },
            "evaluation": {k: result["evaluation"][k] for k in ("tier_map", "limit", "seed", "subset")},
        }
        if not ref:
            extra["quantizer"] = self.spec.gptq.model_dump(exclude={"batch_size"})
        if uses_calib:
            extra["calib_text_sha"] = calib.text_sha
        tmap = loaded.evaluator.tier_map
        rows = []
        for task, t in result["tasks"].items():
            spec_t = tmap.tasks[task]
            rows.append(
                ResultRow(
                    source=SOURCE,
                    source_table=self.spec.protocol(reference=ref),
                    model=unit.model.label,
                    family=info["family"],
                    params_b=info["params_b"],
                    params_nonembed_b=info["params_nonembed_b"],
                    hidden_size=info["hidden_size"],
                    method=_reference_method(self.spec.dtype) if ref else self.spec.method.upper(),
                    bits=_reference_bits(self.spec.dtype) if cfg is None else float(cfg.bits),
                    group_size=None if cfg is None else cfg.group_size,
                    calib_samples=unit.calib_samples if uses_calib else None,
                    calib_samples_effective=calib.effective if uses_calib else None,
                    calib_dataset=calib.source if uses_calib else "",
                    calib_seqlen=cal.seqlen if uses_calib and cal is not None else None,
                    calib_seed=unit.seed if uses_calib else None,
                    task=task,
                    tier=spec_t.tier,
                    chance=spec_t.chance,
                    # what was measured is part of the row's identity: metric with its filter, and shots
                    metric=spec_t.row_metric,
                    value=100.0 * t["correct"] / t["n"],
                    accuracy=t["correct"] / t["n"],  # from the counts, so an exported CSV reads back exactly
                    n_items=t["n"],
                    correct=t["correct"],
                    n_shot=t["n_shot"],
                    extra={**extra, "task": {k: t[k] for k in ("lm_eval_task", "kind", "subtasks") if k in t}},
                )
            )
        return rows


def group_size_misfit(model: Any, group_sizes: list[int]) -> tuple[int, str, str] | None:
    """The first (group size, layer name, why) where a group size breaks ``strata.law``'s rule for the input width
    of one of ``model``'s quantized layers, or None. The sweep and ``calibrate quantize`` refuse such a size."""
    from calibrate.rtn import linear_layers

    for name, layer in linear_layers(model).items():
        for g in group_sizes:
            if why := group_size_problem(g, layer.in_features):
                return g, name, why
    return None


def check_group_sizes(model: Any, group_sizes: list[int], label: str) -> None:
    if misfit := group_size_misfit(model, group_sizes):
        g, name, why = misfit
        raise SweepError(
            f"group size {g} {why} of {label}'s layer {name}; use a divisor of every layer's width, "
            f"or {PER_CHANNEL} (per channel)"
        )


def preflight(spec: SweepSpec) -> None:
    """Inputs that can be checked before any work: model paths, calibration files."""
    from calibrate.calibdata import CalibrationError
    from calibrate.evaluate import EvaluateError, resolve_model

    for m in spec.models:
        try:
            resolve_model(m.model)
        except EvaluateError as exc:
            raise SweepError(f"model {m.label}: {exc}") from None
    cal = spec.calibration
    if spec.method == "gptq" and cal is not None and cal.files:
        for f in cal.files:
            if not Path(f).is_file():
                raise CalibrationError(f"calibration file {f} does not exist; fix calibration.files")


def _reference_method(dtype: str) -> str:
    return {"float32": "FP32", "bfloat16": "BF16", "float16": "FP16"}[dtype]


def _reference_bits(dtype: str) -> float:
    return 32.0 if dtype == "float32" else 16.0


def _model_info(model: Any, spec: ModelSpec) -> dict[str, Any]:
    """Parameters (total and without embeddings/head) and width, counted on the loaded model."""
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    embed = {
        id(p): p.numel()
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
        if m
        for p in m.parameters()
    }
    cfg = model.config
    return {
        "family": spec.family or getattr(cfg, "model_type", "unknown"),
        "params_b": total / 1e9,
        "params_nonembed_b": (total - sum(embed.values())) / 1e9,
        "hidden_size": getattr(cfg, "hidden_size", None),
    }


def auto_batch(model: Any, calib_shape: tuple[int, ...], device: str, cap: int = 16) -> int:
    """Configurations that fit together: each holds its dequantized linear weights (offloaded to host memory) and,
    on the device, its own copy of the hidden states of the calibration set (inputs differ per configuration once
    quantized layers feed the next). Uses half of the free memory of each, at most ``cap``."""
    import torch

    elt = next(model.parameters()).element_size()
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) * elt
    hidden = getattr(model.config, "hidden_size", 0)
    acts = int(math.prod(calib_shape)) * hidden * 4 * 2  # hidden states in and out of a layer, float32
    host_free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    n_host = int(0.5 * host_free // max(weights, 1))
    n_dev = n_host
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info()
        n_dev = int(0.5 * free // max(acts, 1))
    return max(1, min(cap, n_host, n_dev))


# --- the driver ------------------------------------------------------------------------------------------------------


class Executor(Protocol):
    """Runs units and yields the rows of finished configurations, in any order; the driver commits them."""

    def map(self, spec: SweepSpec, units: list[Unit]) -> Iterator[list[ResultRow]]: ...


class LocalExecutor:
    """Everything in this process, units in plan order (the model stays loaded between a model's units)."""

    def __init__(self, log: Progress | None = None) -> None:
        self.log = log

    def map(self, spec: SweepSpec, units: list[Unit]) -> Iterator[list[ResultRow]]:
        worker = Worker(spec, self.log)
        failures: list[UnitFailure] = []
        for unit in units:
            try:
                yield from worker.run(unit)
            except UnitError as exc:  # this unit stops; what it handed back is committed, the next unit runs
                failures.append(UnitFailure(unit, 1, str(exc)))
        if failures:
            raise UnitsFailed(failures)


@dataclass
class SweepSummary:
    store: str
    planned: int  # configurations (evaluations), references included
    already_stored: int
    ran: int = 0
    rows_added: int = 0
    seconds: float = 0.0


def plan_left(spec: SweepSpec, done: dict[tuple[Any, ...], int]) -> tuple[list[Unit], list[Unit]]:
    """Every unit of the spec, and the units (with only their configurations) that ``done`` does not hold."""
    units = plan(spec)
    counts = {m.model: task_count(spec, m) for m in spec.models}
    return units, pending(units, done, lambda m: counts[m.model])


def run_sweep(
    spec: SweepSpec,
    *,
    store_path: str | Path | None = None,
    executor: Executor | None = None,
    on_config: Callable[[SweepSummary, list[ResultRow]], None] | None = None,
    log: Progress | None = None,
    on_start: Callable[[SweepSummary], None] | None = None,
) -> SweepSummary:
    """Run every configuration the store does not hold yet; commit each as it finishes."""
    path = Path(store_path or spec.store)
    preflight(spec)
    with Store.open(path) as store:
        units, todo = plan_left(spec, stored(store, spec))
        planned = sum(u.size for u in units)
        summary = SweepSummary(str(path), planned, planned - sum(u.size for u in todo))
        if on_start is not None:
            on_start(summary)
        start = time.perf_counter()
        for rows in (executor or LocalExecutor(log)).map(spec, todo):
            summary.rows_added += store.add(rows)
            summary.ran += 1
            summary.seconds = time.perf_counter() - start
            if on_config is not None:
                on_config(summary, rows)
    return summary


def status(spec: SweepSpec, store_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Per model: configurations planned, stored and left (read-only; a missing store counts as empty)."""
    path = Path(store_path or spec.store)
    done: dict[tuple[Any, ...], int] = {}
    if path.exists():
        with Store.open(path, create=False) as store:
            done = stored(store, spec)
    units, left = plan_left(spec, done)
    out = []
    for m in spec.models:
        planned = sum(u.size for u in units if u.model == m)
        remaining = sum(u.size for u in left if u.model == m)
        out.append(
            {
                "model": m.label,
                "planned": planned,
                "stored": planned - remaining,
                "left": remaining,
                "reference_stored": not any(u.kind == "reference" for u in left if u.model == m),
            }
        )
    return out
