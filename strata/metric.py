"""What a measurement measures: its metric, and the name of the law it belongs to.

A task measured on two metrics is two quantities (acc_norm is not acc on the same items), so each has its own law,
named ``task:metric`` (``arc_challenge:acc_norm``); a tier's mean counts each task once. Fit, advisor and the
published-data reader all name laws here (no pydantic, no hashing: the advisor's start-up imports it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Metrics that are a fraction of items answered correctly (one 0/1 score per item): what a count likelihood fits.
ACCURACY_METRICS = ("acc", "acc_norm", "exact_match")


def metric_base(metric: str) -> str:
    """A row's metric without its lm-eval filter: ``exact_match,strict-match`` -> ``exact_match``."""
    return metric.split(",")[0]


def law_task(task: str, metric: str) -> str:
    """The name of the law a measurement belongs to: the task for ``acc``, ``task:metric`` for another accuracy
    (``arc_challenge:acc_norm``, ``gsm8k:exact_match``). Two metrics of one task are two quantities (acc_norm is not
    acc on the same items), so they never share a law; a name that already carries a metric is kept."""
    base = metric_base(metric)
    return task if base == "acc" or ":" in task else f"{task}:{base}"


def task_of_law(name: str) -> str:
    """The task a law's name measures: ``gsm8k:exact_match`` -> ``gsm8k``."""
    return name.split(":")[0]


def tier_members(tiers: Mapping[str, str | None], tier: str, prefer: Iterable[str] = ()) -> list[str]:
    """The laws a tier's mean is taken over, each task once: ``tiers`` maps law names to their tier. A task with
    laws on several metrics counts on the one in ``prefer`` (the metric a baseline measured it on), else on acc,
    else on the first by name (a tier mean over ARC-Challenge on acc and on acc_norm would count it twice)."""
    prefer = set(prefer)
    by_task: dict[str, list[str]] = {}
    for name in sorted(n for n, t in tiers.items() if t == tier):
        by_task.setdefault(task_of_law(name), []).append(name)
    out = []
    for task, names in by_task.items():
        chosen = [n for n in names if n in prefer] or [n for n in names if n == task] or names
        out.append(chosen[0])
    return out
