"""Predictions for *this* model: the profile's laws conditioned on the model's own unquantized scores.

The maths is ``strata.baseline``'s (analytic: the baseline pins the model's deviation from the law). Here: which
tiers a baseline can condition (all of the tier's tasks present, on the metric the profile was fitted on), the
draws for tiers and tasks, and what the answer says about it. Defaults: the published unquantized accuracies of
the model (``advisor/data/baselines.json``, made by ``scripts/make_baselines.py``) when the user gives none.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from strata.baseline import Baseline, adj_from_z, conditioned_z, parse_baseline, tier_baseline_z
from strata.law import log_neg_log_acc
from strata.metric import law_task, task_of_law, tier_members
from strata.profile import LawFit, Profile, law_coef, law_draws, point_coef, task_law_for, tier_law_for, unpinned

_SHIPPED = Path(__file__).with_name("data") / "baselines.json"
ANCHOR = (8.0, 128.0, 128.0)  # (B, G, Cb) a new family's drop is carried from (Conditioning._laws)
UNKNOWN_ITEMS = 1000  # items assumed behind a score whose task the tier map does not size


@cache
def _shipped() -> dict[str, Any]:
    """Published baselines by model id as printed, and by its last part (``llama-3.1-8b-instruct`` for
    ``meta-llama/Llama-3.1-8B-Instruct``), lower-cased; a full id wins over another's last part."""
    models = dict(json.loads(_SHIPPED.read_text())["models"])
    short = {k.split("/")[-1]: v for k, v in models.items() if "/" in k}
    return {**short, **models}


def shipped_baseline(*names: str) -> tuple[Baseline, str] | None:
    """The published unquantized scores of the first name found (a model id as published, case-insensitive)."""
    models = _shipped()
    for name in names:
        entry = models.get(name.strip().lower()) or models.get(name.strip().lower().split("/")[-1])
        if entry is not None:
            sources = sorted({t["source"] for t in entry["tasks"].values()})
            base = parse_baseline({"model": entry["model"], "tasks": entry["tasks"], "source": "; ".join(sources)})
            return base, f"published: {entry['model']} ({entry['stage']}), {'; '.join(sources)}"
    return None


def _tier_map_items(name: str) -> int | None:
    from strata.tiermap import load_tier_map

    tmap = load_tier_map()
    spec = tmap.tasks.get(tmap.resolve(task_of_law(name)) or task_of_law(name))
    return spec.items if spec is not None and spec.items else None


def _z(law: LawFit, params: float, bits: Any, group: Any, calib: Any) -> np.ndarray:
    """z = ln(-ln Acc_adj) of the law itself (no model deviation), (S, M)."""
    return np.asarray(log_neg_log_acc(law_coef(law), params, bits, group, calib))


def _point_z(law: LawFit, params: float, bits: Any, group: Any, calib: Any) -> np.ndarray:
    """z of the law's point coefficients, (1, M): the fit's own estimate, as ``fit.drop_spread`` reads it."""
    return np.asarray(log_neg_log_acc(point_coef(law), params, bits, group, calib))


def _align(z: np.ndarray, size: int, key: str) -> np.ndarray:
    """Draws of an independently fitted law brought to ``size`` rows (resampled, seeded, when counts differ)."""
    if z.shape[0] == size:
        return z
    return z[np.random.default_rng(zlib.crc32(key.encode())).integers(0, z.shape[0], size)]


@dataclass
class Conditioning:
    """What one baseline says about one model under one profile."""

    profile: Profile
    model: str
    params: float
    baseline: Baseline
    source: str
    items: dict[str, int]  # task -> items behind its baseline score
    family: str = ""
    stage: str | None = None  # the model's stage class, where its id names one
    tiers: dict[str, list[str]] = field(default_factory=dict)  # tier -> the baseline tasks it is conditioned on
    law_only: dict[str, list[str]] = field(default_factory=dict)  # tier -> its tasks the baseline lacks
    skipped: dict[str, str] = field(default_factory=dict)  # tier -> why it is not conditioned
    unused: list[str] = field(default_factory=list)  # baseline tasks the profile does not use, with why
    whole: dict[str, int | None] = field(default_factory=dict)  # task -> items in its whole test split, if known

    @classmethod
    def of(
        cls,
        profile: Profile,
        model: str,
        params: float,
        baseline: Baseline,
        source: str,
        family: str = "",
        stage: str | None = None,
    ) -> Conditioning:
        # Each score under the name of the law it measures: arc_challenge on acc_norm is arc_challenge:acc_norm.
        baseline = baseline.model_copy(update={"tasks": {law_task(k, t.metric): t for k, t in baseline.tasks.items()}})
        # Items in each task: its law's (the most its fitted rows were scored on), else the tier map's (read only
        # then: the YAML reader is most of a cold start).
        whole: dict[str, int | None] = {}
        for name in baseline.tasks:
            law = profile.tasks.get(name)
            whole[name] = law.items if law is not None and law.items else _tier_map_items(name)
        items = {name: t.n or whole[name] or UNKNOWN_ITEMS for name, t in baseline.tasks.items()}
        c = cls(profile, model, params, baseline, source, items, family, stage, whole=whole)
        used: set[str] = set()
        tiers_of = {k: law.tier for k, law in profile.tasks.items()}
        for tier in profile.tiers:
            tasks = tier_members(tiers_of, tier, prefer=baseline.tasks)  # each task once, on the baseline's metric
            known = [k for k in tasks if k in baseline.tasks]
            if not tasks:
                c.skipped[tier] = "the profile names no tasks for this tier"
            elif tier not in profile.unquantized:
                c.skipped[tier] = "the profile has no 16-bit law for this tier, so no drop to apply"
            elif not known:
                c.skipped[tier] = f"the baseline has none of its tasks ({', '.join(tasks)})"
            else:
                c.tiers[tier] = known
                c.law_only[tier] = [k for k in tasks if k not in known]
                used |= set(known)
        for name in baseline.tasks:
            if name not in used:
                why = "not a task of the profile" if name not in profile.tasks else "its tier is not conditioned"
                other = [k for k in profile.tasks if k != name and task_of_law(k) == task_of_law(name)]
                if name not in profile.tasks and other:
                    why = f"the profile fits {task_of_law(name)} on another metric ({', '.join(other)})"
                c.unused.append(f"{name}: {why}")
        return c

    def _laws(self, tier: str, bits: Any, group: Any, calib: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draws of the tier's law at the configurations (S, M) and of its 16-bit counterpart (S, 1), and the drop
        sd (S,) where the law's drop is 0: the drop applied to the baseline is their difference.

        The counterpart is the same law's draws at an anchor (8-bit, G = 128, Cb = 128) less the point gap from
        that anchor to 16 bits of the fitted family's own laws (quantized and 16-bit). The two laws are fitted
        apart, so their draws are independent: differencing them drew both laws' uncertainty about the *level*
        of the models (most of their spread, and it cancels in a drop), which widened every interval about
        twofold (an 8-bit drop of 0 +- 0.07 on ln(-ln)). Within one law's draws the level cancels and what is left
        is its uncertainty about the effects of B, G and Cb; the gap's own error is in the measured drop spread,
        which is taken about this same point drop (``fit.drop_spread``). A new family's law (the population's,
        drawn with tau) has a level of its own, and the anchor keeps its offset from the fitted family's out of
        the drop as well."""
        law = tier_law_for(self.profile, tier, self.family)
        assert law is not None  # a conditioned tier has a law (Conditioning.of)
        zq = _z(law, self.params, bits, group, calib)
        anchor = [np.array([v]) for v in ANCHOR]
        one = np.array([1.0])
        own, unq = self.profile.tiers[tier], self.profile.unquantized[tier]
        gap = _point_z(own, self.params, *anchor) - _point_z(unq, self.params, one * 16, one, one * 2)
        zu = _z(law, self.params, *anchor) - gap
        return zq, zu, self._drop_sd(tier, law, zq.shape[0])

    def _baseline_z(self, tasks: list[str], size: int, key: str) -> np.ndarray:
        data = {
            k: (self.baseline.tasks[k].mean, self.items[k], self.profile.tasks[k].chance, self.whole.get(k))
            for k in tasks
        }
        return tier_baseline_z(data, size, f"{self.model}:{key}:baseline")[0]

    def _drop_sd(self, tier: str, law: LawFit, size: int) -> np.ndarray:
        """How far one model's drop strays from the law's where the law's drop is 0: the profile's measured spread
        (``fit.drop_spread``; its growth with the drop is ``_drop_scale``), else the law's omega (a deviation in
        level, wider). A new family's law carries its own uncertainty about the drop in its draws (drawn with
        tau)."""
        spread = (self.profile.drop_spread or {}).get(tier)
        if spread is not None:
            return np.full(size, spread.sd)
        if law.draws and "omega" in law.draws:
            return np.resize(np.asarray(law.draws["omega"], float), size)
        return np.zeros(size)

    def _drop_scale(self, tier: str) -> float:
        spread = (self.profile.drop_spread or {}).get(tier)
        return 0.0 if spread is None else spread.scale

    def tier(self, tier: str, bits: Any, group: Any, calib: Any) -> np.ndarray:
        """Chance-adjusted draws (S, M) of the tier for this model: the mean over its tasks (what a tier is), each
        task from its own baseline moved by the tier's drop, or from its own law where the baseline lacks it."""
        tasks = [*self.tiers[tier], *self.law_only[tier]]
        draws = [self.task(k, bits, group, calib) for k in tasks]
        size = max(d.shape[0] for d in draws if d is not None)
        return np.mean([_align(d, size, f"{self.model}:{k}") for k, d in zip(tasks, draws, strict=True)], axis=0)

    def task_baseline(self, task: str, size: int) -> np.ndarray:
        """Draws of one task's 16-bit chance-adjusted value (its baseline, with the item noise)."""
        return adj_from_z(self._baseline_z([task], size, task))

    def tier_baseline(self, tier: str, size: int) -> np.ndarray | None:
        """Draws of the tier's 16-bit value when the baseline holds all its tasks (else None: only part is known)."""
        if self.law_only.get(tier):
            return None
        return adj_from_z(self._baseline_z(self.tiers[tier], size, tier))

    def task(self, task: str, bits: Any, group: Any, calib: Any) -> np.ndarray:
        """Chance-adjusted draws of one task: its own baseline moved by its tier's predicted drop (tasks of a tier
        share the model's deviation, as in the fit), or its own law where the baseline does not hold it."""
        law = self.profile.tasks[task]
        tier = law.tier
        if tier is None or tier not in self.tiers or task not in self.tiers[tier]:
            law = task_law_for(self.profile, task, self.family)  # a new family's: drawn from the population
            own = law_draws(law, self.params, bits, group, calib, model=self.model, tier=tier)
            # no baseline pins this task's level: widened past the fitted sizes and for another stage, as the law
            # alone is
            return own if tier is None else unpinned(self.profile, tier, self.model, self.params / 1e9, self.stage, own)
        zq, zu, sd = self._laws(tier, bits, group, calib)
        z0 = self._baseline_z([task], zq.shape[0], task)
        key = f"{self.model}:{tier}:drop"
        return adj_from_z(conditioned_z(zq, zu, z0, sd, key, self._drop_scale(tier)))
