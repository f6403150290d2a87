"""Predictions held to data the fit never saw, task by task, as `advisor predict` makes them.

Two splits over the published GPTQ rows of the shipped presets' models (every accuracy metric, each under its
law's name, ``strata.metric.law_task``):

- leave one model out: refit the preset's profile without the model (its OLS laws and the collapse model; the
  Bayesian refit per model would take minutes each) and predict each of its rows;
- leave one family out: fit the other families and predict the held family's models, a family the fit never saw
  (OLS: the paper's procedure, the pooled families' laws; NUTS: one joint fit of the other presets, predicted
  from the profile's new-family laws, drawn with tau as estimated from the families fitted).

Each row is predicted with the model's own FP16 scores of the same source as the baseline and without one (the law
alone), beside copying the FP16 score (no drop). Scored in points of raw accuracy: MAE of the point prediction (the
predictive median), the share of rows inside the 90% interval, and how many lie more than 5 points outside it;
rows at 3 bits and more apart from 2-bit rows (the collapse).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from advisor import catalog, core
from advisor.condition import Conditioning
from fit.collapse import configurations, fit_collapse
from fit.ols import FitError
from fit.pipeline import ENGINES, Job, hidden_size_of, read_rows, select, spec_for
from fit.profiles import FitSpec, build_profile
from strata.baseline import parse_baseline
from strata.law import NOMINAL_CALIB_SAMPLES
from strata.metric import ACCURACY_METRICS, law_task, metric_base
from strata.profile import NutsSettings, Profile
from strata.rows import ResultRow

PRESETS = ("qwen3", "qwen3-base", "llama", "llama3")
FAMILY_PRESETS = ("qwen3", "llama", "llama3", "qwen2-instruct")  # one per family (qwen3-base: Qwen3's other stage)
# Families every joint fit pools but no split holds out: Qwen-Chat's rows (MMLU, GSM8K) name models the catalog
# does not hold, so the advisor cannot be scored on them; they still inform the population a new family is drawn
# from, as in the shipped profiles' joint fit.
POPULATION_PRESETS = ("qwen1-chat",)

METHODS = ("law + baseline", "law alone", "copy FP16")
# truth, mean, lo, hi (raw accuracy), then the row's bits, group size and family (for the breakdown by configuration)
Case = tuple[float, float, float | None, float | None, float, int, str]


@dataclass(frozen=True)
class Cell:
    """One family's rows at one (B, G) within a split: where the intervals are wide, or miss."""

    family: str
    bits: float
    group_size: int
    n: int
    mae_points: float
    coverage: float
    width_points: float  # mean width of the 90% intervals
    far: int


@dataclass(frozen=True)
class Score:
    split: str
    method: str
    n: int
    mae_points: float
    coverage: float | None
    far: int | None  # rows more than 5 points outside their 90% interval
    by_config: tuple[Cell, ...] = ()  # the same rows by family and (B, G), for methods with intervals


def _accuracy(r: ResultRow) -> bool:
    return metric_base(r.metric) in ACCURACY_METRICS and r.accuracy is not None


def _gptq_rows(rows: Iterable[ResultRow], models: set[str]) -> list[ResultRow]:
    return [
        r.model_copy(update={"task": law_task(r.task, r.metric)}) for r in rows
        if r.model in models and r.method.upper() == "GPTQ" and _accuracy(r)
        and not r.suspect and r.group_size is not None and r.bits >= 2
    ]  # fmt: skip


def _fp16(rows: Iterable[ResultRow]) -> dict[tuple[str, str, str, str], float]:
    return {
        (r.source, r.model, r.stage, law_task(r.task, r.metric)): float(r.accuracy)  # type: ignore[arg-type]
        for r in rows
        if r.method.upper() in ("FP16", "BF16") and _accuracy(r)
    }


def _with_collapse(profile: Profile, rows: list[ResultRow], method: str) -> Profile:
    try:
        profile.collapse = fit_collapse(configurations(rows, hidden_size_of, method), "held-out fit")
    except ValueError:
        profile.collapse = None
    return profile


def predict_rows(
    profile: Profile, held: list[ResultRow], fp16: dict[tuple[str, str, str, str], float]
) -> dict[str, list[Case]]:
    """(truth, mean, lo, hi) per method for every held-out row the profile has a task law for."""
    out: dict[str, list[Case]] = defaultdict(list)
    cache: dict[tuple[object, ...], object] = {}
    for r in held:
        info = catalog.find(r.model)
        base = fp16.get((r.source, r.model, r.stage, r.task))
        if info is None or base is None or r.task not in profile.tasks or r.group_size is None:
            continue
        own = {k[3]: v for k, v in fp16.items() if k[:3] == (r.source, r.model, r.stage)}
        answers = {}
        for method in METHODS[:2]:
            key = (method, r.source, r.model, r.stage, r.bits, r.group_size, r.calib_samples)
            if key not in cache:
                cond = None
                if method == "law + baseline":
                    bl = parse_baseline({"tasks": {t: {"mean": a} for t, a in own.items()}})
                    cond = Conditioning.of(profile, r.model, info.params, bl, r.source, family=r.family)
                q = core.Query(info, profile, "held-out", cond)
                cb = r.calib_samples or NOMINAL_CALIB_SAMPLES  # a source that states none: the fit's own value
                cache[key] = core.predict(q, r.bits, r.group_size, cb, extrapolate=True)
            answers[method] = cache[key].tasks.get(r.task)  # type: ignore[attr-defined]
        if any(t is None for t in answers.values()):
            continue  # not predicted for this model (a task in no tier, for a family the profile never saw)
        truth, group = float(r.accuracy or 0.0), int(r.group_size)  # both present: _gptq_rows keeps no other
        for method, t in answers.items():
            out[method].append((truth, t.point, t.lo, t.hi, r.bits, group, r.family))
        out["copy FP16"].append((truth, base, None, None, r.bits, group, r.family))
    return out


def score(split: str, got: dict[str, list[Case]]) -> list[Score]:
    """Per method, rows at B >= 3 and at 2 bits (the collapse) apart."""
    scores = []
    for (low, what), method in ((c, m) for c in ((False, "B >= 3"), (True, "B = 2")) for m in METHODS):
        cases = [c for c in got.get(method, []) if (c[4] < 3) == low]
        if not cases:
            continue
        t = np.array([c[0] for c in cases])
        mean = np.array([c[1] for c in cases])
        mae = float(100 * np.mean(np.abs(t - mean)))
        if cases[0][2] is None:
            scores.append(Score(f"{split}, {what}", method, len(cases), mae, None, None))
            continue
        lo = np.array([c[2] for c in cases], float)
        hi = np.array([c[3] for c in cases], float)
        inside = (t >= lo) & (t <= hi)
        outside = (t < lo - 0.05) | (t > hi + 0.05)
        cells = []
        for key in sorted({(c[6], c[4], c[5]) for c in cases}):
            m = np.array([(c[6], c[4], c[5]) == key for c in cases])
            err, width = 100 * np.mean(np.abs(t[m] - mean[m])), 100 * np.mean(hi[m] - lo[m])
            cells.append(Cell(key[0], key[1], key[2], int(m.sum()), float(err), float(np.mean(inside[m])),
                              float(width), int(outside[m].sum())))  # fmt: skip
        scores.append(
            Score(f"{split}, {what}", method, len(cases), mae, float(np.mean(inside)), int(outside.sum()), tuple(cells))
        )
    return scores


def _ols(spec: FitSpec, rows: list[ResultRow]) -> Profile:
    quant = select(rows, spec, hidden_size_of, quantized=True)
    ref = select(rows, spec, hidden_size_of, quantized=False)
    return _with_collapse(build_profile(quant, ref, spec, "held-out"), rows, spec.method)


def leave_one_model_out(rows: list[ResultRow], presets: Iterable[str], progress: Callable[[str], None]) -> list[Score]:
    got: dict[str, list[Case]] = defaultdict(list)
    fp16 = _fp16(rows)
    for preset in presets:
        spec = spec_for(preset)
        models = sorted({r.model for r in select(rows, spec, hidden_size_of, quantized=True).rows})
        for m in models:
            progress(f"leave out {m} ({preset})")
            rest = [r for r in rows if r.model != m]
            held = [r for r in _gptq_rows(rows, {m}) if not spec.stages or r.stage in spec.stages]
            try:
                refit = _ols(spec, rest)
            except FitError as exc:  # e.g. Llama-3 without Meta-Llama-3-8B: one configuration per model is left
                progress(f"  not refittable without {m}: {exc}; its {len(held)} rows are not scored")
                continue
            for method, cases in predict_rows(refit, held, fp16).items():
                got[method].extend(cases)
    return score("leave one model out (OLS refit)", got)


def leave_one_family_out(
    rows: list[ResultRow], presets: Iterable[str], engine: str, progress: Callable[[str], None]
) -> list[Score]:
    """Each preset's family held out in turn; the fit sees every other preset's family."""
    got: dict[str, list[Case]] = defaultdict(list)
    fp16 = _fp16(rows)
    presets = tuple(presets)
    for held_preset in presets:
        held_spec = spec_for(held_preset)
        kept = [r for r in rows if r.family not in held_spec.families]
        others = [spec_for(p) for p in presets if p != held_preset]
        progress(f"fit {', '.join(o.name for o in others)}; predict {held_preset} ({engine})")
        if engine == "ols":  # the paper's procedure: one family's law carried to another, each fitted family in turn
            for other in others:
                try:
                    carried = _ols(other, kept)
                except FitError as exc:  # a family too small for a law of its own (Qwen2: six MMLU rows)
                    progress(f"  no OLS law of {other.name} to carry: {exc}")
                    continue
                for method, cases in predict_rows(carried, _held(rows, held_spec), fp16).items():
                    got[method].extend(cases)
            continue
        else:
            settings = NutsSettings(warmup=500, samples=500, target_accept=0.9)
            first, *rest = [*others, *(spec_for(p) for p in POPULATION_PRESETS)]
            quant = {o.name: select(kept, o, hidden_size_of, quantized=True) for o in [first, *rest]}
            ref = select(kept, first, hidden_size_of, quantized=False)
            job = Job(first, quant[first.name], ref, {o.name: quant[o.name] for o in rest}, settings, "held-out", True)
            profile = _with_collapse(ENGINES["nuts"].fit(job), kept, "GPTQ")
        for method, cases in predict_rows(profile, _held(rows, held_spec), fp16).items():
            got[method].extend(cases)
    return score(f"leave one family out ({engine})", got)


def _held(rows: list[ResultRow], spec: FitSpec) -> list[ResultRow]:
    """The GPTQ rows of the spec's models (its stages) to predict."""
    models = {r.model for r in select(rows, spec, hidden_size_of, quantized=True).rows}
    return [r for r in _gptq_rows(rows, models) if not spec.stages or r.stage in spec.stages]


def heldout_scores(engine: str = "ols", progress: Callable[[str], None] = lambda _m: None) -> list[Score]:
    """Both splits over the shipped presets' published rows."""
    rows = read_rows()
    scores = leave_one_model_out(rows, PRESETS, progress)
    scores += leave_one_family_out(rows, FAMILY_PRESETS, "ols", progress)
    if engine == "nuts":
        scores += leave_one_family_out(rows, FAMILY_PRESETS, "nuts", progress)
    return scores


def markdown(scores: list[Score]) -> str:
    lines = ["| split | method | n | MAE (points) | 90% coverage | > 5 points outside |", "|---|---|---|---|---|---|"]
    for s in scores:
        cov = "-" if s.coverage is None else f"{s.coverage:.2f}"
        far = "-" if s.far is None else str(s.far)
        lines.append(f"| {s.split} | {s.method} | {s.n} | {s.mae_points:.2f} | {cov} | {far} |")
    return "\n".join(lines)


def breakdown_markdown(scores: list[Score], method: str = "law + baseline") -> str:
    """Each split's rows for ``method`` by family and configuration: coverage and interval width where they are."""
    lines = [
        "| split | family | B | G | n | MAE (points) | 90% coverage | mean width (points) | > 5 points outside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        if s.method != method:
            continue
        for c in s.by_config:
            g = "per-channel" if c.group_size == -1 else str(c.group_size)
            lines.append(f"| {s.split} | {c.family} | {c.bits:g} | {g} | {c.n} | {c.mae_points:.2f} | "
                         f"{c.coverage:.2f} | {c.width_points:.1f} | {c.far} |")  # fmt: skip
    return "\n".join(lines)
