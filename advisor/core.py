"""Predictions and the recommendation search: pure functions of a profile, a model and a grid (numpy only).

"Cheapest" is defined once, here: among configurations whose predicted tiers meet every target, the one with
the smallest weight memory; ties broken by the fewest calibration samples (less calibration work), then by the
larger margin. The search evaluates every point of the grid (exact, not sampled).

Qualification: with ``confidence`` set, a configuration qualifies when the fraction of draws (posterior, or
the OLS sampling distribution) in which every targeted tier meets its target is at least ``confidence``;
with ``confidence=None``, when each tier's mean meets its target.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from advisor.catalog import ModelInfo
from advisor.condition import Conditioning
from advisor.memory import GB, kv_cache_bytes, memory_bill, quantized_bytes, unquantized_bytes
from advisor.schema import (
    ANY_ENGINE,
    BaselineAnswer,
    Candidate,
    Deployment,
    Frontier,
    Interval,
    MemoryParts,
    ModelAnswer,
    NextCheaper,
    Prediction,
    ProfileRef,
    QuantConfig,
    Recommendation,
    TaskAnswer,
    TierAnswer,
)
from strata.baseline import adj_from_z
from strata.collapse import mix, probability
from strata.errors import UserError
from strata.law import TIERS, denormalize, effective_group_size, group_size_problem
from strata.metric import tier_members
from strata.profile import LawFit, Profile, law_draws, seed_noise, task_law_for, tier_law_for, unpinned

DEFAULT_BITS = (2, 3, 4, 8)
DEFAULT_GROUPS = (32, 64, 128, 256, -1)
DEFAULT_CALIB = (8, 32, 128, 512, 1024)
RELATIVE = "relative"
ADJUSTED = "adjusted"


class AdviceError(UserError):
    """A query the advisor cannot answer as asked (bad target, unsupported bits, ...); one line with the fix."""


@dataclass(frozen=True)
class Query:
    model: ModelInfo
    profile: Profile
    profile_path: str
    conditioning: Conditioning | None = None  # the model's own unquantized scores, when known
    stage: str | None = None  # the model's stage class (strata.stage), where its id names one

    def tier_tasks(self, tier: str) -> list[str]:
        """The tasks this answer's tier is the mean of: the baseline's where it conditions the tier (each task on
        the metric the baseline measured it on), else the profile's."""
        c = self.conditioning
        if c is not None and tier in c.tiers:
            return [*c.tiers[tier], *c.law_only[tier]]
        return tier_tasks(self.profile, tier)

    def tier_draws(self, tier: str, bits: Any, group: Any, calib: Any) -> np.ndarray:
        """Predictive chance-adjusted draws (S, M) of a tier: given the baseline where it conditions the tier, with
        the collapse mixed in where the profile models it."""
        c, m = self.conditioning, self.model
        if c is not None and tier in c.tiers:
            smooth = c.tier(tier, bits, group, calib)
            known = c.tier_baseline(tier, smooth.shape[0])
        else:
            law = _tier_law(self.profile, tier, family=m.family)
            smooth = law_draws(law, m.params, bits, group, calib, model=m.name, tier=tier)
            smooth = unpinned(self.profile, tier, m.name, m.params_b, self.stage, smooth)  # no baseline pins the level
            known = None
        if known is None and tier in self.profile.unquantized:
            one = np.array([1.0])
            unq = self.profile.unquantized[tier]
            known = law_draws(unq, m.params, one * 16, one, one * 2, model=m.name, tier=tier)[:, 0]
        return self._collapse(self._seed_noise(smooth, tier, bits), known, bits, group)

    def task_draws(self, task: str, bits: Any, group: Any, calib: Any) -> np.ndarray:
        c, m = self.conditioning, self.model
        law = task_law_for(self.profile, task, m.family)  # a new family's: drawn from the population
        if c is not None:
            smooth = c.task(task, bits, group, calib)
        else:
            smooth = law_draws(law, m.params, bits, group, calib, model=m.name, tier=law.tier)
            if law.tier is not None:
                smooth = unpinned(self.profile, law.tier, m.name, m.params_b, self.stage, smooth)
        base = c.baseline.tasks.get(task) if c is not None else None
        if base is not None:
            known = c.task_baseline(task, smooth.shape[0]) if c is not None else None
        else:  # no 16-bit law per task: its own law at 8 bits (near lossless in every published table) stands in
            eight = np.full(np.shape(np.atleast_1d(bits)), 8.0)
            known = law_draws(law, m.params, eight, group, calib, model=m.name, tier=law.tier).mean(axis=1)
        return self._collapse(self._seed_noise(smooth, task, bits), known, bits, group)

    def _seed_noise(self, smooth: np.ndarray, name: str, bits: Any) -> np.ndarray:
        """``smooth`` plus a next run's seed-to-seed noise of the tier or task, where the profile measured it: the
        interval is then one for what a quantization run will measure."""
        if smooth.shape[0] < 2:  # a point estimate stays one: noise is spread, not a shift
            return smooth
        noise = seed_noise(self.profile, name, self.model.name, bits, smooth.shape)
        return smooth if noise is None else smooth + noise

    def _collapse(self, smooth: np.ndarray, known: np.ndarray | None, bits: Any, group: Any) -> np.ndarray:
        """``smooth`` (S, M) with the profile's collapse probability mixed in; a collapsed draw keeps a retained
        fraction of ``known`` (S,), the model's unquantized value. One collapse per (model, configuration), shared
        by every tier and task, as a collapse is of the whole model."""
        model = self.profile.collapse
        if model is None or known is None:
            return smooth
        p = probability(model, self.model.family, bits, group, self.model.params)
        return mix(smooth, np.asarray(known, float).reshape(-1, 1), p, model, self.model.name)

    def baseline_answer(self) -> BaselineAnswer | None:
        c = self.conditioning
        if c is None:
            return None
        return BaselineAnswer(
            source=c.source, conditioned=c.tiers, law_only=c.law_only, not_conditioned=c.skipped, unused=c.unused
        )


def tier_tasks(profile: Profile, tier: str) -> list[str]:
    """The tasks a tier of this profile stands for (its law is the law of their mean accuracy), each task once."""
    return tier_members({name: law.tier for name, law in profile.tasks.items()}, tier)


def _interval(samples: np.ndarray) -> Interval:
    """Mean and 90% interval of a column of draws (no interval from a single point estimate)."""
    if samples.shape[0] == 1:
        return Interval(mean=float(samples[0]))
    # numpy's default (linear) quantile as an interpolation over the sorted draws: np.quantile gives the same
    # values but imports numpy.ma on first call, about 5% of the advisor's cold start.
    n = samples.shape[0]
    lo, med, hi = np.interp(np.array([0.05, 0.5, 0.95]) * (n - 1), np.arange(n), np.sort(samples))
    return Interval(mean=float(samples.mean()), lo=float(lo), hi=float(hi), median=float(med))


def check_bits(profile: Profile, bits: Sequence[float], *, extrapolate: bool = False) -> None:
    lo, hi = profile.bits_supported
    below = profile.collapse is not None  # below the law's bits the collapse model answers
    bad = [b for b in bits if not (lo <= b <= hi) and b != 16 and not (below and 1 < b < lo)]
    if bad and not extrapolate:
        raise AdviceError(
            f"bits {bad[0]:g} is outside what the law supports ({lo:g} to {hi:g} bits, or 16 for unquantized): "
            "2-bit is a collapse the smooth law does not describe and this profile has no collapse model; "
            "pass --extrapolate to predict anyway"
        )
    if any(b <= 1 or b > 16 for b in bits):
        raise AdviceError(f"bits must be in (1, 16], got {min(bits):g}..{max(bits):g}")


def fitted_groups(model: ModelInfo, groups: Sequence[int], excluded: list[str]) -> list[int]:
    """The default group-size grid fitted to the model: sizes wider than its layers are left out (and listed in
    ``excluded``), so a small model is searched on what it can use; a grid the user chose is kept as given (and
    checked by ``check_groups``)."""
    if tuple(groups) != DEFAULT_GROUPS:
        return list(groups)
    width = model.arch.hidden_size
    keep = [g for g in groups if g == -1 or g <= width]
    excluded += [
        f"G={g}: wider than {model.name}'s {width}-wide layers (the default grid)" for g in groups if g not in keep
    ]
    return keep


def check_groups(model: ModelInfo, groups: Sequence[int]) -> None:
    # strata.law's rule, with the width as a bound rather than a divisor: the default grid holds sizes (256) that
    # do not divide some catalog widths (2880, 1152, 960, 896)
    for g in groups:
        if group_size_problem(g) or g > model.arch.hidden_size:
            raise AdviceError(
                f"group size {g} is not usable for {model.name}: use -1 (per-channel) or 1..{model.arch.hidden_size}"
            )


def extrapolation(
    profile: Profile, model: ModelInfo, bits: float, group: int, calib: int, stage: str | None = None
) -> list[str]:
    """Factors of a query outside the data the profile was fitted on (the law still answers; it says so)."""
    d = profile.data
    out = []
    shift = profile.stage_shift
    if stage is not None and shift is not None and stage == shift.stage:
        out.append(f"stage {stage} is not in the profile's data ({', '.join(d.stages)}); without a baseline its "
                   "intervals are widened by the stage shift measured on " + ", ".join(shift.models))  # fmt: skip
    if model.family not in profile.families:
        nf = profile.new_family
        how = f"; predicted as a new family of the population of {', '.join(nf.families)}" if nf else ""
        out.append(f"family {model.family} is not in the profile's data ({', '.join(profile.families)}){how}")
    if not d.params_b[0] <= model.params_b <= d.params_b[1]:
        out.append(f"N {model.params_b:g}B outside {d.params_b[0]:g}-{d.params_b[1]:g}B")
    if bits != 16 and not min(d.bits) <= bits <= max(d.bits):
        out.append(f"B {bits:g} outside {min(d.bits):g}-{max(d.bits):g}")
    positive = [g for g in d.group_sizes if g > 0]
    if group not in d.group_sizes and not (positive and min(positive) <= group <= max(positive)):
        out.append(f"G {group} outside {d.group_sizes}")
    if d.calib_samples and not min(d.calib_samples) <= calib <= max(d.calib_samples):
        out.append(f"Cb {calib} outside {min(d.calib_samples)}-{max(d.calib_samples)}")
    return out


def _model_answer(m: ModelInfo) -> ModelAnswer:
    return ModelAnswer(
        name=m.name, family=m.family, params_b=m.params_b, hidden_size=m.arch.hidden_size, approximate=m.approximate
    )


def _ref(q: Query) -> ProfileRef:
    return ProfileRef(name=q.profile.name, path=q.profile_path, engine=q.profile.engine)


def _tier_law(profile: Profile, tier: str, *, unquantized: bool = False, family: str = "") -> LawFit:
    law = profile.unquantized.get(tier) if unquantized else tier_law_for(profile, tier, family)
    if law is None:
        what = "16-bit" if unquantized else "quantized"
        raise AdviceError(
            f"profile {profile.name} has no {what} {tier} law (its data has no {tier} benchmark); "
            f"drop the {tier} target or use a profile with {tier} data (--profile)"
        )
    return law


def predict(
    q: Query,
    bits: float,
    group: int,
    calib: int,
    tasks: Sequence[str] = (),
    *,
    extrapolate: bool = False,
    deployment: Deployment | None = None,
) -> Prediction:
    """Per-tier (chance-adjusted) and per-task (raw accuracy) predictions for one configuration."""
    p, m = q.profile, q.model
    dep = deployment or Deployment()
    check_bits(p, [bits], extrapolate=extrapolate)
    check_groups(m, [group])
    if calib < 2:
        raise AdviceError(f"calibration samples must be >= 2, got {calib}")
    check_deployment(m, dep)
    kernel = None
    if dep.engine != ANY_ENGINE and bits != 16:
        kernel = _kernel(dep.engine, bits, group)
        if kernel == "unsupported":
            raise AdviceError(
                f"{dep.engine} has no kernel for GPTQ {bits:g}-bit G={group}; pick another configuration, or see "
                f"`advisor recommend --engine {dep.engine}`"
            )
    b, c = np.array([bits], float), np.array([calib], float)
    g = np.asarray(effective_group_size(np.array([group], float), m.arch.hidden_size))
    if bits == 16:
        tiers = {
            t: TierAnswer(**iv.model_dump(), tasks=q.tier_tasks(t)) for t, iv in _unquantized(q, list(p.tiers)).items()
        }
    else:
        tiers = {t: TierAnswer(**_interval(q.tier_draws(t, b, g, c)[:, 0]).model_dump(), tasks=q.tier_tasks(t))
                 for t in p.tiers}  # fmt: skip
    unknown = [t for t in tasks if t not in p.tasks]
    if unknown:
        raise AdviceError(f"profile {p.name} has no law for task {unknown[0]}; it knows {', '.join(p.tasks)}")
    answers = {}
    notes = []
    for name in tasks or list(p.tasks):
        law = p.tasks[name]
        if law.tier is None and m.family not in p.families and task_law_for(p, name, m.family) is law:
            # A task in no tier has no population law: its one fitted family's law, carried to another family,
            # predicts near chance with an interval a point wide (truthfulqa_mc1 for Gemma-2: 0.252 [0.251, 0.253]).
            notes.append(f"task {name}: in no tier, so no law for a family the profile was not fitted on; left out")
            continue
        if bits == 16:
            base = q.conditioning.baseline.tasks.get(name) if q.conditioning is not None else None
            if base is None:
                continue  # no per-task 16-bit law: a task's unquantized value is known only from a baseline
            adj = _baseline_task_draws(q, name)
        else:
            adj = q.task_draws(name, b, g, c)[:, 0]
        raw = np.clip(denormalize(adj, law.chance), 0.0, 1.0)  # a collapsed draw may fall below chance, never below 0
        answers[name] = TaskAnswer(**_interval(np.asarray(raw)).model_dump(), tier=law.tier, chance=law.chance)
    mem = quantized_bytes(m.arch, bits, group).total if bits != 16 else unquantized_bytes(m.arch)
    return Prediction(
        model=_model_answer(m),
        profile=_ref(q),
        config=QuantConfig(method=p.method if bits != 16 else "BF16", bits=bits, group_size=group, calib_samples=calib),
        memory_gb=round(mem / GB, 4),
        memory=_bill(m, bits, group, dep),
        kernel=kernel,  # type: ignore[arg-type]
        deployment=dep,
        baseline=q.baseline_answer(),
        tiers=tiers,
        tasks=answers,
        extrapolates=[*extrapolation(p, m, bits, group, calib, q.stage), *notes],
    )


def recommend(
    q: Query,
    targets: dict[str, float],
    *,
    memory_gb: float | None = None,
    bits_grid: Sequence[float] | None = None,
    group_grid: Sequence[int] = DEFAULT_GROUPS,
    calib_grid: Sequence[int] = DEFAULT_CALIB,
    scale: str = ADJUSTED,
    confidence: float | None = 0.9,
    alternatives: int = 3,
    deployment: Deployment | None = None,
    allow_slow: bool = False,
) -> Recommendation:
    """The cheapest configuration of the grid whose predicted tiers meet the targets (see module doc)."""
    p, m = q.profile, q.model
    dep = deployment or Deployment()
    _check_targets(targets, confidence)
    usable, excluded = _usable_bits(p, bits_grid)
    group_grid = fitted_groups(m, group_grid, excluded)
    check_groups(m, group_grid)
    if any(c < 2 for c in calib_grid):
        raise AdviceError("calibration-set sizes must be >= 2 samples")
    grid = _grid(m, usable, group_grid, calib_grid, memory_gb, dep, allow_slow, excluded)
    scored = _score(q, grid, _absolute_targets(q, targets, scale), confidence)
    order = sorted(range(len(grid)), key=lambda i: (grid.memory[i], grid.calib[i], -scored.margin[i]))
    chosen = [i for i in order if scored.ok[i] and grid.fits[i]]
    below = [i for i in order if grid.fits[i] and chosen and grid.memory[i] < grid.memory[chosen[0]]]
    next_cheaper = None
    if below:  # the most expensive of the cheaper ones (ties: the best margin): one step down the memory ladder
        j = max(below, key=lambda i: (grid.memory[i], scored.margin[i]))
        short = {t: round(v - float(scored.means[t][j]), 4) for t, v in scored.targets.items()}
        next_cheaper = NextCheaper(candidate=_candidate(q, grid, scored, j), shortfall=short)
    closest, shortfall, reachable = None, {}, {}
    if not chosen:
        pool = [i for i in order if grid.fits[i]]
        j = scored.nearest_miss(pool, grid.memory)
        closest, shortfall = _candidate(q, grid, scored, j), scored.shortfall(j)
        reachable = {t: round(float(mu[pool].max()), 4) for t, mu in scored.means.items()}
    return Recommendation(
        model=_model_answer(m),
        profile=_ref(q),
        scale="relative" if scale == RELATIVE else "adjusted",
        targets=targets,
        memory_budget_gb=memory_gb,
        deployment=dep,
        baseline=q.baseline_answer(),
        confidence=confidence,
        found=bool(chosen),
        recommendation=_candidate(q, grid, scored, chosen[0]) if chosen else None,
        alternatives=[_candidate(q, grid, scored, i) for i in chosen[1 : 1 + alternatives]],
        next_cheaper=next_cheaper,
        closest=closest,
        shortfall=shortfall,
        best_reachable=reachable,
        unquantized=_unquantized(q, list(targets)),
        bf16_gb=round(unquantized_bytes(m.arch) / GB, 4),
        searched=len(grid),
        excluded=excluded,
    )


def _unquantized(q: Query, tiers: list[str]) -> dict[str, Interval]:
    """The model's 16-bit value of each tier: its baseline where one conditions the tier (with its item noise),
    else the profile's 16-bit law's prediction (where the profile has one)."""
    one, m, c = np.array([1.0]), q.model, q.conditioning
    out = {}
    for t in tiers:
        known = c.tier_baseline(t, 400) if c is not None and t in c.tiers else None
        if known is not None:
            out[t] = _interval(known)
        elif t in q.profile.unquantized:
            law = q.profile.unquantized[t]
            out[t] = _interval(law_draws(law, m.params, one * 16, one, one * 2, model=m.name, tier=t)[:, 0])
    return out


def _baseline_task_draws(q: Query, task: str) -> np.ndarray:
    c = q.conditioning
    assert c is not None
    return adj_from_z(c._baseline_z([task], 400, task))


def _check_targets(targets: dict[str, float], confidence: float | None) -> None:
    if not targets:
        raise AdviceError("give at least one target: --min-km, --min-ka or --min-kr (values in [0, 1])")
    for tier, v in targets.items():
        if tier not in TIERS:
            raise AdviceError(f"unknown tier {tier!r}; the tiers are {', '.join(TIERS)}")
        if not 0.0 <= v <= 1.0:
            raise AdviceError(f"target for {tier} is {v:g}; targets are fractions in [0, 1]")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise AdviceError(f"--confidence must be in (0, 1), got {confidence:g}")


def _usable_bits(p: Profile, bits_grid: Sequence[float] | None) -> tuple[list[float], list[str]]:
    """The grid's bit-widths the answer can stand behind, and a line for each one left out: inside the law's
    support; below it only when asked for (``bits_grid`` given) and the profile models the collapse."""
    lo, hi = p.bits_supported
    asked = bits_grid is not None
    grid = list(bits_grid) if bits_grid is not None else list(DEFAULT_BITS)
    usable = [b for b in grid if lo <= b <= hi or (asked and p.collapse is not None and 1 < b < lo)]
    excluded = []
    for b in sorted(set(grid) - set(usable)):
        if b < lo and p.collapse is not None:
            excluded.append(f"{b:g}-bit: a collapse regime, left out unless asked for (--bits {b:g},3,4,8)")
        else:
            excluded.append(f"{b:g}-bit: outside the law's support ({lo:g}-{hi:g} bits) and no collapse model")
    if not usable:
        raise AdviceError(f"no bit-width in the grid is within the law's support ({lo:g}-{hi:g}); e.g. --bits 3,4,8")
    return usable, excluded


def _absolute_targets(q: Query, targets: dict[str, float], scale: str) -> dict[str, float]:
    """Targets on the chance-adjusted scale: relative ones are fractions of the model's predicted 16-bit value."""
    if scale != RELATIVE:
        return dict(targets)
    unq = _unquantized(q, list(targets))
    for t in targets:
        if t not in unq:
            _tier_law(q.profile, t, unquantized=True)  # raises: no 16-bit value to be relative to
    return {t: v * unq[t].mean for t, v in targets.items()}


@dataclass(frozen=True)
class _Grid:
    """Every configuration searched, as aligned arrays."""

    configs: list[tuple[float, int, int]]
    bits: np.ndarray
    group: np.ndarray
    group_eff: np.ndarray  # per-channel resolved to the input width
    calib: np.ndarray
    weights: np.ndarray  # weight GB
    memory: np.ndarray  # GB checked against the budget: weights, or the whole bill with a context
    fits: np.ndarray  # within the memory budget
    bills: dict[tuple[float, int], MemoryParts | None]
    kernels: dict[tuple[float, int], str | None]

    def __len__(self) -> int:
        return len(self.configs)


def _bill(m: ModelInfo, bits: float, group: int, dep: Deployment) -> MemoryParts | None:
    if dep.context is None:
        return None
    b = memory_bill(m.arch, bits, group, dep.context, dep.batch, dep.kv_dtype)
    gb = b.gb()
    return MemoryParts(
        weights_gb=round(gb["weights"], 4),
        kv_cache_gb=round(gb["kv_cache"], 4),
        runtime_gb=round(gb["runtime"], 4),
        total_gb=round(gb["total"], 4),
        runtime_source=b.runtime_source,
    )


def _kernel(engine: str, bits: float, group: int) -> str:
    from advisor import engines

    return engines.kernel_support(engine, bits, group, sym=True, act_order=False)


def check_deployment(m: ModelInfo, dep: Deployment) -> None:
    """Flags of the deployment that name nothing usable: one line with the fix."""
    if dep.engine == ANY_ENGINE and dep.context is None:
        return
    from advisor import engines  # the engines file is read only when an engine is named

    if dep.engine != engines.ANY:
        engines.engine(dep.engine)  # unknown engine: EngineError naming the choices
    if dep.context is not None:
        kv_cache_bytes(m.arch, dep.context, dep.batch, dep.kv_dtype)  # context/batch/dtype: MemoryBillError
        engines.check_kv_dtype(dep.engine, dep.kv_dtype)


def _grid(
    m: ModelInfo,
    bits: Sequence[float],
    groups: Sequence[int],
    calibs: Sequence[int],
    memory_gb: float | None,
    dep: Deployment,
    allow_slow: bool,
    excluded: list[str],
) -> _Grid:
    """The grid the engine can serve (``excluded`` gets a line per configuration left out), with its memory."""
    check_deployment(m, dep)
    kernels: dict[tuple[float, int], str | None] = {}
    for bb, gg in itertools.product(bits, groups):
        support = "fast" if dep.engine == ANY_ENGINE else _kernel(dep.engine, bb, gg)
        if support == "unsupported" or (support == "slow" and not allow_slow):
            why = "no kernel" if support == "unsupported" else "only a slow path (--allow-slow to include it)"
            excluded.append(f"{bb:g}-bit G={gg}: {dep.engine} has {why}")
            continue
        kernels[(bb, gg)] = support if dep.engine != ANY_ENGINE else None
    if not kernels:
        raise AdviceError(
            f"--engine {dep.engine} has no {'' if allow_slow else 'fast '}kernel for any configuration of the grid; "
            "widen --bits / --group-sizes" + ("" if allow_slow else ", or pass --allow-slow")
        )
    configs = [(bb, gg, cc) for bb, gg in kernels for cc in calibs]
    b, g, c = (np.array([x[k] for x in configs], float) for k in range(3))
    weights_gb = {k: quantized_bytes(m.arch, k[0], k[1]).total / GB for k in kernels}
    bills = {k: _bill(m, k[0], k[1], dep) for k in kernels}
    weights = np.array([weights_gb[(bb, gg)] for bb, gg, _ in configs])
    billed = {k: (v.total_gb if v is not None else weights_gb[k]) for k, v in bills.items()}
    memory = np.array([billed[(bb, gg)] for bb, gg, _ in configs])
    what = "of weights" if dep.context is None else "in all (weights + KV cache + runtime)"
    if memory_gb is not None:
        if memory_gb <= 0:
            raise AdviceError(f"--memory-gb must be positive, got {memory_gb:g}")
        if memory_gb < memory.min():
            raise AdviceError(
                f"--memory-gb {memory_gb:g} is impossible for {m.name}: its smallest configuration in this grid "
                f"needs {memory.min():.2f} GB {what}"
            )
    fits = memory <= memory_gb if memory_gb is not None else np.ones(len(configs), bool)
    g_eff = np.asarray(effective_group_size(g, m.arch.hidden_size))
    return _Grid(configs, b, g, g_eff, c, weights, memory, fits, bills, kernels)


@dataclass(frozen=True)
class _Scored:
    """Predictive draws of each targeted tier over the grid, and what they say about the targets."""

    targets: dict[str, float]  # chance-adjusted
    draws: dict[str, np.ndarray]  # tier -> (S, M)
    confidence: float | None

    @property
    def has_draws(self) -> bool:
        return next(iter(self.draws.values())).shape[0] > 1

    @cached_property
    def meets(self) -> dict[str, np.ndarray]:
        return {t: self.draws[t] >= v for t, v in self.targets.items()}

    @cached_property
    def prob_all(self) -> np.ndarray:
        """Share of draws in which every targeted tier meets its target (the tiers' joint predictive)."""
        return np.mean(np.logical_and.reduce(list(self.meets.values())), axis=0)

    @cached_property
    def means(self) -> dict[str, np.ndarray]:
        return {t: d.mean(axis=0) for t, d in self.draws.items()}

    @cached_property
    def margin(self) -> np.ndarray:
        return np.min([self.means[t] - self.targets[t] for t in self.targets], axis=0)

    @property
    def ok(self) -> np.ndarray:
        return self.prob_all >= self.confidence if self.confidence is not None else self.margin >= 0

    def nearest_miss(self, pool: list[int], memory: np.ndarray) -> int:
        score = self.prob_all if self.confidence is not None else self.margin
        return max(pool, key=lambda i: (score[i], self.margin[i], -memory[i]))

    def shortfall(self, j: int) -> dict[str, float]:
        short = {t: round(v - float(self.means[t][j]), 4) for t, v in self.targets.items()}
        missed = {t: s for t, s in short.items() if s > 0}
        return missed or (short if self.confidence is not None else {})  # means meet; the probability does not


def _score(
    q: Query, grid: _Grid, targets: dict[str, float], confidence: float | None, tiers: Sequence[str] = ()
) -> _Scored:
    """Draws of the targeted tiers (and of ``tiers``, predicted without a target) over the grid."""
    for t in dict.fromkeys([*targets, *tiers]):
        _tier_law(q.profile, t)  # a tier the profile has no quantized law for: one line
    draws = {t: q.tier_draws(t, grid.bits, grid.group_eff, grid.calib) for t in dict.fromkeys([*targets, *tiers])}
    return _Scored(targets, draws, confidence)


def frontier(
    q: Query,
    targets: dict[str, float] | None = None,
    *,
    memory_gb: float | None = None,
    bits_grid: Sequence[float] | None = None,
    group_grid: Sequence[int] = DEFAULT_GROUPS,
    calib_grid: Sequence[int] = DEFAULT_CALIB,
    scale: str = ADJUSTED,
    deployment: Deployment | None = None,
    allow_slow: bool = False,
) -> Frontier:
    """Every configuration of the grid that no other beats on (memory, predicted mean of every tier) at once."""
    p, m = q.profile, q.model
    dep = deployment or Deployment()
    targets = targets or {}
    if targets:
        _check_targets(targets, None)
    usable, excluded = _usable_bits(p, bits_grid)
    group_grid = fitted_groups(m, group_grid, excluded)
    check_groups(m, group_grid)
    grid = _grid(m, usable, group_grid, calib_grid, memory_gb, dep, allow_slow, excluded)
    tiers = list(targets) or list(p.tiers)
    scored = _score(q, grid, _absolute_targets(q, targets, scale), None, tiers)
    means = np.stack([scored.means[t] for t in tiers])  # (tiers, M)
    order = sorted((i for i in range(len(grid)) if grid.fits[i]), key=lambda i: (grid.memory[i], grid.calib[i]))

    def dominated(i: int) -> bool:  # another is as cheap and as good on every tier, and better somewhere
        as_good = (grid.memory <= grid.memory[i]) & np.all(means >= means[:, [i]], axis=0)
        better = (grid.memory < grid.memory[i]) | np.any(means > means[:, [i]], axis=0)
        return bool(np.any(as_good & better & grid.fits))

    kept = [i for i in order if not dominated(i)]
    return Frontier(
        model=_model_answer(m),
        profile=_ref(q),
        targets=scored.targets,
        deployment=dep,
        points=[_candidate(q, grid, scored, i) for i in kept],
        searched=len(grid),
        excluded=excluded,
    )


def _candidate(q: Query, grid: _Grid, s: _Scored, i: int) -> Candidate:
    b, g, c = grid.configs[i]
    tiers = {
        t: TierAnswer(
            **_interval(s.draws[t][:, i]).model_dump(),
            tasks=q.tier_tasks(t),
            target=s.targets.get(t),
            meets=bool(s.means[t][i] >= s.targets[t]) if t in s.targets else None,
            prob=float(np.mean(s.meets[t][:, i])) if s.has_draws and t in s.targets else None,
        )
        for t in s.draws
    }
    return Candidate(
        config=QuantConfig(method=q.profile.method, bits=b, group_size=g, calib_samples=c),
        memory_gb=round(float(grid.weights[i]), 4),
        compression=round(unquantized_bytes(q.model.arch) / GB / float(grid.weights[i]), 3),
        memory=grid.bills[(b, g)],
        kernel=grid.kernels[(b, g)],  # type: ignore[arg-type]
        tiers=tiers,
        prob_all=float(s.prob_all[i]) if s.has_draws and s.targets else None,
        extrapolates=extrapolation(q.profile, q.model, b, g, c, q.stage),
    )
