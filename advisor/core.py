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

import numpy as np

from advisor.catalog import ModelInfo
from advisor.memory import GB, quantized_bytes, unquantized_bytes
from advisor.schema import (
    Candidate,
    Interval,
    ModelAnswer,
    Prediction,
    ProfileRef,
    QuantConfig,
    Recommendation,
    TaskAnswer,
    TierAnswer,
)
from strata.errors import UserError
from strata.law import denormalize, effective_group_size
from strata.profile import LawFit, Profile, law_draws

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


def _interval(samples: np.ndarray) -> Interval:
    """Mean and 90% interval of a column of draws (no interval from a single point estimate)."""
    if samples.shape[0] == 1:
        return Interval(mean=float(samples[0]))
    lo, hi = np.quantile(samples, [0.05, 0.95])
    return Interval(mean=float(samples.mean()), lo=float(lo), hi=float(hi))


def check_bits(profile: Profile, bits: Sequence[float], *, extrapolate: bool = False) -> None:
    lo, hi = profile.bits_supported
    bad = [b for b in bits if not (lo <= b <= hi) and b != 16]
    if bad and not extrapolate:
        raise AdviceError(
            f"bits {bad[0]:g} is outside what the law supports ({lo:g} to {hi:g} bits, or 16 for unquantized): "
            "2-bit is a collapse the paper excludes from fitting; pass --extrapolate to predict anyway"
        )
    if any(b <= 1 or b > 16 for b in bits):
        raise AdviceError(f"bits must be in (1, 16], got {min(bits):g}..{max(bits):g}")


def check_groups(model: ModelInfo, groups: Sequence[int]) -> None:
    for g in groups:
        if g != -1 and (g < 1 or g > model.arch.hidden_size):
            raise AdviceError(
                f"group size {g} is not usable for {model.name}: use -1 (per-channel) or 1..{model.arch.hidden_size}"
            )


def extrapolation(profile: Profile, model: ModelInfo, bits: float, group: int, calib: int) -> list[str]:
    """Factors of a query outside the data the profile was fitted on (the law still answers; it says so)."""
    d = profile.data
    out = []
    if model.family not in profile.families:
        out.append(f"family {model.family} is not in the profile's data ({', '.join(profile.families)})")
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


def _tier_law(profile: Profile, tier: str, *, unquantized: bool = False) -> LawFit:
    laws = profile.unquantized if unquantized else profile.tiers
    if tier not in laws:
        what = "16-bit" if unquantized else "quantized"
        raise AdviceError(
            f"profile {profile.name} has no {what} {tier} law (its data has no {tier} benchmark); "
            f"drop the {tier} target or use a profile with {tier} data (--profile)"
        )
    return laws[tier]


def predict(
    q: Query, bits: float, group: int, calib: int, tasks: Sequence[str] = (), *, extrapolate: bool = False
) -> Prediction:
    """Per-tier (chance-adjusted) and per-task (raw accuracy) predictions for one configuration."""
    p, m = q.profile, q.model
    check_bits(p, [bits], extrapolate=extrapolate)
    check_groups(m, [group])
    if calib < 2:
        raise AdviceError(f"calibration samples must be >= 2, got {calib}")
    b, c = np.array([bits], float), np.array([calib], float)
    g = np.asarray(effective_group_size(np.array([group], float), m.arch.hidden_size))
    laws = p.unquantized if bits == 16 else p.tiers
    tiers = {t: _interval(law_draws(law, m.params, b, g, c, model=m.name, tier=t)[:, 0]) for t, law in laws.items()}
    unknown = [t for t in tasks if t not in p.tasks]
    if unknown:
        raise AdviceError(f"profile {p.name} has no law for task {unknown[0]}; it knows {', '.join(p.tasks)}")
    answers = {}
    if bits != 16:
        for name in tasks or list(p.tasks):
            law = p.tasks[name]
            adj = law_draws(law, m.params, b, g, c, model=m.name, tier=law.tier)[:, 0]
            raw = denormalize(adj, law.chance)
            answers[name] = TaskAnswer(**_interval(np.asarray(raw)).model_dump(), tier=law.tier, chance=law.chance)
    mem = quantized_bytes(m.arch, bits, group).total if bits != 16 else unquantized_bytes(m.arch)
    return Prediction(
        model=_model_answer(m),
        profile=_ref(q),
        config=QuantConfig(method=p.method if bits != 16 else "BF16", bits=bits, group_size=group, calib_samples=calib),
        memory_gb=round(mem / GB, 4),
        tiers=tiers,
        tasks=answers,
        extrapolates=extrapolation(p, m, bits, group, calib),
    )


def recommend(
    q: Query,
    targets: dict[str, float],
    *,
    memory_gb: float | None = None,
    bits_grid: Sequence[float] = DEFAULT_BITS,
    group_grid: Sequence[int] = DEFAULT_GROUPS,
    calib_grid: Sequence[int] = DEFAULT_CALIB,
    scale: str = ADJUSTED,
    confidence: float | None = 0.9,
    alternatives: int = 3,
) -> Recommendation:
    """The cheapest configuration of the grid whose predicted tiers meet the targets (see module doc)."""
    p, m = q.profile, q.model
    if not targets:
        raise AdviceError("give at least one target: --min-km, --min-ka or --min-kr (values in [0, 1])")
    for tier, v in targets.items():
        if tier not in ("KM", "KA", "KR"):
            raise AdviceError(f"unknown tier {tier!r}; the tiers are KM, KA, KR")
        if not 0.0 <= v <= 1.0:
            raise AdviceError(f"target for {tier} is {v:g}; targets are fractions in [0, 1]")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise AdviceError(f"--confidence must be in (0, 1), got {confidence:g}")
    check_groups(m, group_grid)
    if any(c < 2 for c in calib_grid):
        raise AdviceError("calibration-set sizes must be >= 2 samples")
    excluded = []
    lo, hi = p.bits_supported
    usable_bits = [b for b in bits_grid if lo <= b <= hi]
    for b in sorted(set(bits_grid) - set(usable_bits)):
        excluded.append(f"{b:g}-bit: outside the law's support ({lo:g}-{hi:g} bits; 2-bit collapse is not modelled)")
    if not usable_bits:
        raise AdviceError(f"no bit-width in the grid is within the law's support ({lo:g}-{hi:g}); e.g. --bits 3,4,8")

    abs_targets = dict(targets)
    if scale == RELATIVE:
        one = np.array([1.0])
        for t in targets:
            unq = _tier_law(p, t, unquantized=True)
            ref = law_draws(unq, m.params, one * 16, one, one * 2, model=m.name, tier=t).mean()
            abs_targets[t] = targets[t] * float(ref)

    grid = list(itertools.product(usable_bits, group_grid, calib_grid))
    bits = np.array([x[0] for x in grid], float)
    groups = np.array([x[1] for x in grid], float)
    calib = np.array([x[2] for x in grid], float)
    g_eff = np.asarray(effective_group_size(groups, m.arch.hidden_size))
    mem = {(b, g): quantized_bytes(m.arch, b, g).total / GB for b in usable_bits for g in group_grid}
    memory = np.array([mem[(b, g)] for b, g, _ in grid])
    if memory_gb is not None:
        if memory_gb <= 0:
            raise AdviceError(f"--memory-gb must be positive, got {memory_gb:g}")
        if memory_gb < memory.min():
            raise AdviceError(
                f"--memory-gb {memory_gb:g} is impossible for {m.name}: its smallest configuration in this grid "
                f"needs {memory.min():.2f} GB of weights"
            )

    draws = {t: law_draws(_tier_law(p, t), m.params, bits, g_eff, calib, model=m.name, tier=t) for t in abs_targets}
    meets = {t: d >= abs_targets[t] for t, d in draws.items()}  # (S, M)
    prob_all = np.mean(np.logical_and.reduce(list(meets.values())), axis=0)
    means = {t: d.mean(axis=0) for t, d in draws.items()}
    margin = np.min([means[t] - abs_targets[t] for t in abs_targets], axis=0)
    ok = prob_all >= confidence if confidence is not None else margin >= 0
    fits_memory = memory <= memory_gb if memory_gb is not None else np.ones(len(grid), bool)

    def candidate(i: int) -> Candidate:
        b, g, c = grid[i]
        tiers = {}
        for t in draws:
            iv = _interval(draws[t][:, i])
            tiers[t] = TierAnswer(
                **iv.model_dump(),
                target=abs_targets[t],
                meets=bool(means[t][i] >= abs_targets[t]),
                prob=float(np.mean(meets[t][:, i])) if draws[t].shape[0] > 1 else None,
            )
        return Candidate(
            config=QuantConfig(method=p.method, bits=b, group_size=g, calib_samples=c),
            memory_gb=round(float(memory[i]), 4),
            compression=round(unquantized_bytes(m.arch) / GB / float(memory[i]), 3),
            tiers=tiers,
            prob_all=float(prob_all[i]) if next(iter(draws.values())).shape[0] > 1 else None,
            extrapolates=extrapolation(p, m, b, g, c),
        )

    order = sorted(range(len(grid)), key=lambda i: (memory[i], calib[i], -margin[i]))
    chosen = [i for i in order if ok[i] and fits_memory[i]]
    best = candidate(chosen[0]) if chosen else None
    closest = None
    shortfall: dict[str, float] = {}
    if not chosen:
        pool = [i for i in order if fits_memory[i]]
        score = prob_all if confidence is not None else margin
        j = max(pool, key=lambda i: (score[i], margin[i], -memory[i]))
        closest = candidate(j)
        shortfall = {
            t: round(abs_targets[t] - float(means[t][j]), 4) for t in abs_targets if means[t][j] < abs_targets[t]
        }
        if not shortfall and confidence is not None:  # means meet; the probability does not
            shortfall = {t: round(abs_targets[t] - float(means[t][j]), 4) for t in abs_targets}
    return Recommendation(
        model=_model_answer(m),
        profile=_ref(q),
        scale="relative" if scale == RELATIVE else "adjusted",
        targets=targets,
        memory_budget_gb=memory_gb,
        confidence=confidence,
        found=best is not None,
        recommendation=best,
        alternatives=[candidate(i) for i in chosen[1 : 1 + alternatives]],
        closest=closest,
        shortfall=shortfall,
        bf16_gb=round(unquantized_bytes(m.arch) / GB, 4),
        searched=len(grid),
        excluded=excluded,
    )
