"""The result row: one (model, configuration, task) measurement, and what identifies it.

Published tables, the project's own sweeps and the store all speak in these rows; ``fit`` reads them the same way
whatever their source. ``key()`` is the measurement's identity: storing the same result twice is harmless.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ResultRow(BaseModel):
    """One measurement. Accuracy-type metrics hold ``accuracy`` in [0, 1]; others (perplexity) only ``value``."""

    model_config = ConfigDict(extra="forbid")

    source: str
    source_table: str = ""
    model: str
    family: str
    stage: str = ""
    params_b: float = Field(gt=0, description="total parameters, billions")
    params_nonembed_b: float | None = None
    hidden_size: int | None = Field(default=None, description="input width used for per-channel G; None = look up")
    method: str = Field(description="FP16, GPTQ, RTN, AWQ, ...")
    bits: float
    act_bits: float | None = None
    group_size: int | None = Field(default=None, description="-1 = per-channel; None for unquantized")
    calib_samples: int | None = None
    calib_samples_effective: int | None = None
    calib_dataset: str = ""
    calib_seqlen: int | None = None
    calib_seed: int | None = None
    task: str
    tier: str | None = None
    chance: float | None = None
    metric: str = Field(description="acc, ppl, or a summary metric such as mean_acc_6tasks")
    value: float = Field(description="the value as reported (percent for published accuracies)")
    accuracy: float | None = Field(default=None, description="accuracy as a fraction in [0, 1]")
    n_items: int | None = None
    correct: int | None = None
    n_shot: int | None = None
    suspect: bool = False
    note: str = ""
    extra: dict[str, Any] = Field(default_factory=dict, description="timings, library versions, spec hash, ...")

    def key(self) -> str:
        """What identifies this measurement: everything but the outcome and free-text notes."""
        ident = self.model_dump(
            exclude={"value", "accuracy", "correct", "note", "extra", "suspect", "tier", "chance", "n_items"}
        )
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
