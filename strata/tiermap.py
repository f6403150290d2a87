"""The task -> tier map: which knowledge tier each task measures, its chance level and evaluation-set size.

One editable YAML file (``strata/data/tier_map.yaml`` by default) is the single source of tiers, tasks and
chance levels for the whole project; ``load_tier_map`` validates it and names the offending field on error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from strata.errors import UserError

TIER_NAMES = {"KM": "knowledge memorization", "KA": "knowledge application", "KR": "knowledge reasoning"}
DEFAULT_TIER_MAP = Path(__file__).parent / "data" / "tier_map.yaml"
SCHEMA_VERSION = 1


class TierMapError(UserError):
    """A tier map file that cannot be used; the message is one line naming the field and the fix."""


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Literal["KM", "KA", "KR"] | None = Field(description="None: evaluated per task, in no tier law")
    chance: float = Field(ge=0.0, lt=1.0, description="accuracy of random guessing")
    items: int | None = Field(default=None, gt=0, description="items in the standard evaluation split")
    evidence: Literal["paper-secondary", "project-choice", "synthetic"] = "project-choice"
    why: str = ""
    aliases: list[str] = Field(default_factory=list)
    lm_eval_task: str | None = Field(default=None, description="lm-eval task name, when it differs from the key")
    metric: Literal["acc", "acc_norm", "exact_match"] = Field(
        default="acc", description="lm-eval metric read (one 0/1 score per item, so the mean is a fraction correct)"
    )
    filter: str = Field(
        default="none",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="lm-eval filter of the metric ('none': no filter_list)",
    )
    num_fewshot: int = Field(default=0, ge=0, le=64, description="few-shot examples in every prompt")
    subtasks: list[str] | None = Field(
        default=None, min_length=1, description="of a group: only these subtasks (n and correct summed over them)"
    )

    @property
    def metric_key(self) -> str:
        """The key of lm-eval's results: ``<metric>,<filter>``."""
        return f"{self.metric},{self.filter}"

    @property
    def row_metric(self) -> str:
        """The stored row's metric: the metric, with its filter when there is one (``exact_match,strict-match``)."""
        return self.metric if self.filter == "none" else self.metric_key


class TierMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    include_path: str | None = Field(
        default=None, description="folder of local lm-eval task YAMLs, relative to the map"
    )
    tasks: dict[str, TaskSpec]

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(
                f"tier map schema_version {v} is not supported; this strata reads version {SCHEMA_VERSION}"
            )
        return v

    @field_validator("tasks")
    @classmethod
    def _subsets_have_own_keys(cls, v: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
        for key, spec in v.items():
            if spec.subtasks is not None and key == (spec.lm_eval_task or key):
                raise ValueError(
                    f"task {key} names subtasks: a subset of a group is a different measurement; give it its own key "
                    f"and set lm_eval_task: {key}"
                )
        return v

    def resolve(self, name: str) -> str | None:
        """The canonical task key for a task name or one of its aliases (case-insensitive), or None."""
        key = name.strip().lower()
        if key in self.tasks:
            return key
        for task, spec in self.tasks.items():
            if key in (a.lower() for a in spec.aliases):
                return task
        return None

    def tasks_of(self, tier: str) -> list[str]:
        return [t for t, s in self.tasks.items() if s.tier == tier]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"


def load_tier_map(path: str | Path | None = None) -> TierMap:
    """Load and validate a tier map; raise TierMapError with one line naming the field on bad input."""
    path = Path(path) if path is not None else DEFAULT_TIER_MAP
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TierMapError(f"tier map {path} does not exist; pass an existing YAML file") from None
    except yaml.YAMLError as exc:
        raise TierMapError(f"tier map {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise TierMapError(f"tier map {path} must be a mapping with a 'tasks' key")
    try:
        return TierMap.model_validate(raw)
    except ValidationError as exc:
        raise TierMapError(f"tier map {path}: {_first_error(exc)} (tiers are KM, KA, KR; chance in [0, 1))") from None
