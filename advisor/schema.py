"""Answers of the advisor, as pydantic models: the recommendation and the prediction (what ``advisor`` prints
with ``--json`` and returns from its Python API). The profile format they are computed from is ``strata.profile``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from strata.answer import Estimate
from strata.profile import Strict as _Strict

ANSWER_SCHEMA_VERSION = 2

Interval = Estimate  # predicted: the 5% and 95% quantiles of the predictive draws (see strata.answer)


class TierAnswer(Estimate):
    tasks: list[str] = Field(default_factory=list, description="the tasks whose mean accuracy the tier is")
    target: float | None = Field(default=None, description="the target on the chance-adjusted scale")
    meets: bool | None = None
    prob: float | None = Field(default=None, description="posterior probability that the tier meets its target")


class TaskAnswer(Interval):
    tier: str | None
    chance: float


class QuantConfig(_Strict):
    method: str
    bits: float
    group_size: int
    calib_samples: int


class Candidate(_Strict):
    config: QuantConfig
    memory_gb: float = Field(description="weight memory in decimal GB (GPTQ storage)")
    compression: float = Field(description="BF16 weight memory / this configuration's")
    tiers: dict[str, TierAnswer]
    prob_all: float | None = Field(default=None, description="probability that every targeted tier meets its target")
    extrapolates: list[str] = Field(default_factory=list, description="factors outside the profile's data")


class ModelAnswer(_Strict):
    name: str
    family: str
    params_b: float
    hidden_size: int
    approximate: bool = False


class ProfileRef(_Strict):
    name: str
    path: str
    engine: str


class Recommendation(_Strict):
    schema_version: int = ANSWER_SCHEMA_VERSION
    kind: Literal["recommendation"] = "recommendation"
    model: ModelAnswer
    profile: ProfileRef
    scale: Literal["adjusted", "relative"]
    targets: dict[str, float] = Field(description="per-tier targets as given, on `scale`")
    memory_budget_gb: float | None
    confidence: float | None
    found: bool
    recommendation: Candidate | None
    alternatives: list[Candidate]
    closest: Candidate | None = Field(default=None, description="when nothing qualifies: the nearest miss")
    shortfall: dict[str, float] = Field(default_factory=dict, description="tier -> target minus prediction")
    best_reachable: dict[str, float] = Field(
        default_factory=dict,
        description="when nothing qualifies: per tier, the highest mean any searched configuration reaches",
    )
    unquantized: dict[str, Interval] = Field(
        default_factory=dict,
        description="per targeted tier, the model's predicted 16-bit value (where the profile has a 16-bit law)",
    )
    bf16_gb: float
    searched: int
    excluded: list[str] = Field(default_factory=list)


class Prediction(_Strict):
    schema_version: int = ANSWER_SCHEMA_VERSION
    kind: Literal["prediction"] = "prediction"
    model: ModelAnswer
    profile: ProfileRef
    config: QuantConfig
    memory_gb: float
    tiers: dict[str, TierAnswer]
    tasks: dict[str, TaskAnswer]
    extrapolates: list[str] = Field(default_factory=list)
