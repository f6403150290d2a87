"""Answers of the advisor, as pydantic models: the recommendation and the prediction (what ``advisor`` prints
with ``--json`` and returns from its Python API). The profile format they are computed from is ``strata.profile``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from strata.answer import Estimate
from strata.profile import Strict as _Strict

ANSWER_SCHEMA_VERSION = 2
ANY_ENGINE = "any"  # the engine choice that restricts nothing

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
    sym: bool = Field(default=True, description="symmetric grid, as GPTQModel's default and the emitted configs")
    act_order: bool = Field(default=False, description="columns in Hessian order (desc_act)")


class BaselineAnswer(_Strict):
    """The model's own unquantized scores the answer is conditioned on."""

    source: str = Field(description="where the scores come from: a file, or the published table shipped")
    conditioned: dict[str, list[str]] = Field(description="tier -> the baseline tasks it is conditioned on")
    law_only: dict[str, list[str]] = Field(
        default_factory=dict, description="tier -> its tasks the baseline lacks, predicted by their own laws"
    )
    not_conditioned: dict[str, str] = Field(default_factory=dict, description="tier -> why not (law alone)")
    unused: list[str] = Field(default_factory=list, description="baseline tasks the answer does not use, and why")


class Deployment(_Strict):
    """Where the model will be served: what the memory bill and the kernel check are computed for."""

    engine: str = ANY_ENGINE
    context: int | None = Field(default=None, description="tokens per sequence; None: weights only are billed")
    batch: int = 1
    kv_dtype: str = "bf16"


class MemoryParts(_Strict):
    """The whole serving bill, decimal GB: weights + KV cache + runtime allowance."""

    weights_gb: float
    kv_cache_gb: float
    runtime_gb: float
    total_gb: float
    runtime_source: str


class Candidate(_Strict):
    config: QuantConfig
    memory_gb: float = Field(description="weight memory in decimal GB (GPTQ storage)")
    compression: float = Field(description="BF16 weight memory / this configuration's")
    memory: MemoryParts | None = Field(
        default=None, description="the whole bill, with --context; checked by --memory-gb"
    )
    kernel: Literal["fast", "slow"] | None = Field(default=None, description="the engine's kernel path, with --engine")
    tiers: dict[str, TierAnswer]
    prob_all: float | None = Field(default=None, description="probability that every targeted tier meets its target")
    extrapolates: list[str] = Field(default_factory=list, description="factors outside the profile's data")


class NextCheaper(_Strict):
    """The cheapest configuration below the recommendation, and how far it falls short."""

    candidate: Candidate
    shortfall: dict[str, float] = Field(description="tier -> target minus predicted mean (positive: short)")


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
    deployment: Deployment = Field(default_factory=Deployment)
    baseline: BaselineAnswer | None = Field(default=None, description="the unquantized scores conditioned on")
    confidence: float | None
    found: bool
    recommendation: Candidate | None
    alternatives: list[Candidate]
    next_cheaper: NextCheaper | None = Field(default=None, description="what one step cheaper would cost in accuracy")
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
    memory: MemoryParts | None = None
    kernel: Literal["fast", "slow"] | None = None
    deployment: Deployment = Field(default_factory=Deployment)
    baseline: BaselineAnswer | None = None
    tiers: dict[str, TierAnswer]
    tasks: dict[str, TaskAnswer]
    extrapolates: list[str] = Field(default_factory=list)


class Frontier(_Strict):
    """Every configuration no other beats on memory and every tier's predicted mean at once."""

    schema_version: int = ANSWER_SCHEMA_VERSION
    kind: Literal["frontier"] = "frontier"
    model: ModelAnswer
    profile: ProfileRef
    targets: dict[str, float] = Field(default_factory=dict, description="drawn on the plot; chance-adjusted")
    deployment: Deployment = Field(default_factory=Deployment)
    points: list[Candidate] = Field(description="non-dominated configurations, cheapest first")
    searched: int
    excluded: list[str] = Field(default_factory=list)
