"""The one shape of a measured or predicted answer: ``calibrate evaluate`` and ``advisor predict`` both say it.

    {"tiers": {"KR": {"mean", "lo", "hi", "level", "tasks"}}, "tasks": {"arc_challenge": {"mean", "lo", "hi", ...}}}

One meaning under each key, whoever answers:
- a tier's ``mean`` is the unweighted mean over the tier's tasks of chance-adjusted accuracy: the observation the
  fit takes for a tier (each task counts once, whatever its size, as in the paper) and what a tier law predicts;
- a task's ``mean`` is raw accuracy in [0, 1];
- ``lo`` / ``hi`` bound a central interval at ``level`` (0.9 everywhere): measured, the binomial sampling band;
  predicted, the 5% and 95% quantiles of the predictive draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from strata.profile import Strict

LEVEL = 0.9
Z90 = 1.6448536269514722  # standard normal quantile at 0.95: a central 90% interval


class Estimate(Strict):
    mean: float
    lo: float | None = Field(default=None, description="lower end of the central interval at `level`")
    hi: float | None = Field(default=None, description="upper end of the central interval at `level`")
    level: float = LEVEL
    median: float | None = Field(
        default=None,
        description="predicted: the predictive median, the point to hold one measurement against (a small collapse "
        "probability pulls the mean down, not the median); absent for a measured value, whose mean is the point",
    )

    @property
    def point(self) -> float:
        return self.median if self.median is not None else self.mean


def tier_mean(adjusted: Sequence[float]) -> float:
    """A tier's value from its tasks' chance-adjusted accuracies: their unweighted mean."""
    return sum(adjusted) / len(adjusted)


def measured_tier(acc: Sequence[float], stderr: Sequence[float], chance: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error) of a measured tier from its tasks' raw accuracies, their binomial standard errors
    and chance levels; the tasks' item samples are independent, so the variances add."""
    k = len(acc)
    mean = tier_mean([(a - c) / (1 - c) for a, c in zip(acc, chance, strict=True)])
    se = math.sqrt(sum((s / (1 - c)) ** 2 for s, c in zip(stderr, chance, strict=True))) / k
    return mean, se
