"""What ``calibrate verify`` reads and what it answers: the advisor's answer (read, not imported: ``strata`` is the
ground floor), a plain configuration file, and the verification report (``calibrate verify --json``).

Reading an answer: only the fields verify uses are declared and the rest is ignored, so an answer with fields a
later advisor adds still reads; what is declared is validated (``schema_version`` 2, the answer kinds that name one
configuration: ``recommendation`` and ``prediction``).

The report holds, per tier, the measured value (the tier's chance-adjusted mean, ``strata.answer``'s meaning, with
its binomial standard error and 90% band), the predicted median and 90% interval, whether the measurement falls
inside it, the target (chance-adjusted) and pass/fail; with several calibration seeds, the seed-to-seed spread.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strata.answer import LEVEL, Z90, Estimate
from strata.law import PER_CHANNEL, TIERS, group_size_problem
from strata.profile import Strict

REPORT_SCHEMA_VERSION = 1
ANSWER_SCHEMA_VERSION = 2  # advisor/schema.py's ANSWER_SCHEMA_VERSION, the answers this reader knows
EXIT_NOT_MET = 3  # a target is not met: the advisor's own code for "no configuration meets the targets"
Scale = Literal["adjusted", "relative"]


# --- what verify reads ------------------------------------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class AnswerConfig(_Loose):
    method: str = "GPTQ"
    bits: float
    group_size: int
    calib_samples: int
    sym: bool = True
    act_order: bool = False


class AnswerTier(_Loose):
    mean: float
    lo: float | None = None
    hi: float | None = None
    level: float = LEVEL
    median: float | None = None
    tasks: list[str] = Field(default_factory=list)
    target: float | None = None


class AnswerCandidate(_Loose):
    config: AnswerConfig
    tiers: dict[str, AnswerTier] = Field(default_factory=dict)


class AnswerModel(_Loose):
    name: str
    hidden_size: int | None = None


class AnswerProfile(_Loose):
    name: str
    path: str = ""


class AdvisorAnswer(_Loose):
    """The part of ``advisor recommend --json`` (or ``advisor predict --json``) that verify uses."""

    schema_version: int
    kind: Literal["recommendation", "prediction"]
    model: AnswerModel
    profile: AnswerProfile | None = None
    scale: Scale = "adjusted"
    targets: dict[str, float] = Field(default_factory=dict)
    found: bool = True
    recommendation: AnswerCandidate | None = None  # recommend: the pick (None when nothing qualifies)
    config: AnswerConfig | None = None  # predict: the configuration predicted
    tiers: dict[str, AnswerTier] = Field(default_factory=dict)  # predict: its tiers

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != ANSWER_SCHEMA_VERSION:
            raise ValueError(f"answer schema_version {v}; this strata reads version {ANSWER_SCHEMA_VERSION}")
        return v

    def candidate(self) -> AnswerCandidate | None:
        """The configuration and its predicted tiers (None: a recommendation that found none)."""
        if self.kind == "prediction":
            return AnswerCandidate(config=self.config, tiers=self.tiers) if self.config is not None else None
        return self.recommendation


class VerifyConfig(Strict):
    """A plain configuration file for ``calibrate verify`` (JSON or YAML): the model and one GPTQ configuration,
    with optional per-tier targets. Nothing is predicted for it; the report holds measurements and pass/fail."""

    model: str = Field(min_length=1, description="local model folder (relative paths: against the file's folder)")
    bits: int = Field(description="weight bits, 2..8")
    group_size: int = Field(description=f"group size, or {PER_CHANNEL} for per channel")
    calib_samples: int = Field(gt=0, description="calibration samples (Cb)")
    targets: dict[str, float] = Field(default_factory=dict, description="tier -> target, e.g. {KR: 0.6}")
    scale: Scale = Field(default="adjusted", description="targets chance-adjusted, or fractions of unquantized")
    sym: bool | None = Field(default=None, description="symmetric grid; default: the sweep protocol's")
    act_order: bool | None = Field(default=None, description="act-order; default: the sweep protocol's")

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: int) -> int:
        if not 2 <= v <= 8:
            raise ValueError(f"bits must be an integer in 2..8, got {v}")
        return v

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if why := group_size_problem(v):
            raise ValueError(f"group size {v} {why}; use a positive size or {PER_CHANNEL} (per channel)")
        return v

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: dict[str, float]) -> dict[str, float]:
        for tier, t in v.items():
            if tier not in TIERS:
                raise ValueError(f"unknown tier {tier!r}; targets are for {', '.join(TIERS)}")
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"target for {tier} is {t:g}; targets are fractions in [0, 1]")
        return v


# --- the report -----------------------------------------------------------------------------------------------


class SeedSpread(Strict):
    """Tier values across calibration seeds: the run-to-run noise of quantization at this configuration."""

    values: list[float] = Field(description="the tier's measured value under each seed, in seed order")
    sd: float = Field(description="sample standard deviation across seeds")
    range: float = Field(description="largest minus smallest")
    band: float = Field(description=f"2 x {Z90:.3f} x sd: the width of a central 90% band of seed noise alone")
    interval_wider: bool | None = Field(
        default=None, description="the predicted 90% interval is wider than `band` (None: nothing predicted)"
    )


class TierCheck(Strict):
    tasks: list[str] = Field(description="the tasks the tier's value is the mean over")
    measured: Estimate = Field(description="chance-adjusted mean (over seeds), 90% binomial band")
    stderr: float = Field(description="binomial standard error of the measured mean (item sampling)")
    predicted: Estimate | None = Field(default=None, description="the answer's median and 90% interval")
    inside: bool | None = Field(default=None, description="measured mean within the predicted interval")
    target: float | None = Field(default=None, description="the target, chance-adjusted (relative: times unquantized)")
    passes: bool | None = Field(default=None, description="measured mean >= target (None: no target)")
    spread: SeedSpread | None = None


class Run(Strict):
    seed: int
    reused: bool = Field(description="found in the store (measured before with the same protocol), not recomputed")


class VerifiedConfig(Strict):
    method: Literal["GPTQ"] = "GPTQ"
    bits: int
    group_size: int
    calib_samples: int
    sym: bool
    act_order: bool


class VerifyReport(Strict):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: Literal["verification"] = "verification"
    source: str = Field(description="the file verified")
    input: Literal["recommendation", "prediction", "configuration"]
    profile: str | None = Field(default=None, description="the profile the answer was predicted with")
    model: str = Field(description="the local model folder quantized")
    label: str = Field(description="the model's name in the store")
    config: VerifiedConfig
    calibration: str = Field(description="calibration text, as stored (calib_dataset)")
    seqlen: int
    protocol: str = Field(description="quantizer + evaluation protocol; stored rows are reused only under it")
    store: str
    tier_map: str
    scale: Scale
    runs: list[Run]
    unquantized: dict[str, Estimate] = Field(
        default_factory=dict, description="relative targets: the measured unquantized tiers they are fractions of"
    )
    tiers: dict[str, TierCheck]
    passed: bool = Field(description="every target met (true when there are no targets)")
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_NOT_MET


# --- the arithmetic -------------------------------------------------------------------------------------------


def tier_check(
    tasks: Sequence[str],
    per_seed: Sequence[dict[str, tuple[int, int]]],
    chance: dict[str, float],
    predicted: AnswerTier | None = None,
    target: float | None = None,
) -> TierCheck:
    """One tier from per-seed ``task -> (correct, n)`` counts. The measured value is the tier mean of each task's
    accuracy averaged over seeds; its standard error is binomial over the task's items (the same items under every
    seed, so it does not shrink with seeds), combined over tasks as ``strata.answer.measured_tier`` does."""
    k = len(tasks)

    def adj(acc: float, c: float) -> float:
        return (acc - c) / (1 - c)

    acc = {t: statistics.fmean(s[t][0] / s[t][1] for s in per_seed) for t in tasks}
    n = {t: per_seed[0][t][1] for t in tasks}
    mean = sum(adj(acc[t], chance[t]) for t in tasks) / k
    var = sum((acc[t] * (1 - acc[t]) / (n[t] - 1) if n[t] > 1 else 0.0) / (1 - chance[t]) ** 2 for t in tasks)
    se = math.sqrt(var) / k
    floor = sum(adj(0.0, chance[t]) for t in tasks) / k
    measured = Estimate(mean=mean, lo=max(mean - Z90 * se, floor), hi=min(mean + Z90 * se, 1.0))
    pred = None
    inside = None
    if predicted is not None:
        pred = Estimate(mean=predicted.mean, lo=predicted.lo, hi=predicted.hi, median=predicted.median)
        if predicted.lo is not None and predicted.hi is not None:
            inside = predicted.lo <= mean <= predicted.hi
    spread = None
    if len(per_seed) > 1:
        values = [sum(adj(s[t][0] / s[t][1], chance[t]) for t in tasks) / k for s in per_seed]
        sd = statistics.stdev(values)
        wider = None
        if pred is not None and pred.lo is not None and pred.hi is not None:
            wider = pred.hi - pred.lo > 2 * Z90 * sd
        spread = SeedSpread(
            values=values, sd=sd, range=max(values) - min(values), band=2 * Z90 * sd, interval_wider=wider
        )
    return TierCheck(
        tasks=list(tasks),
        measured=measured,
        stderr=se,
        predicted=pred,
        inside=inside,
        target=target,
        passes=None if target is None else mean >= target,
        spread=spread,
    )


def input_kind(data: Any) -> Literal["answer", "configuration"]:
    """An object with ``kind`` is an advisor answer; anything else is read as a configuration."""
    return "answer" if isinstance(data, dict) and "kind" in data else "configuration"
