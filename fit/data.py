"""The data a Bayesian fit conditions on, checked: counts per row (``FitData``) and the centred design and index
structure of the hierarchy built from them (``Design``).

c is the intercept at the data's centre: the features [ln N, ln log2 B, ln log2 Cb, ln G] are centred on their
mean (``Design``), which removes the intercept-slope correlation that makes NUTS crawl; the reported
ln_a = c - sum_j coef_j * centre_j is on the law's own scale (strata/law.py LawCoef). A factor that never varies
is centred on its one value, so its exponent cancels from the likelihood and its posterior is its prior (and
ln_a carries that uncertainty away from the observed value): the honest answer for Cb and G in published
tables, which never vary them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strata import law
from strata.law import TIERS

FACTORS: tuple[str, ...] = ("params", "bits", "calib_samples", "group_size")  # order of the design's columns


@dataclass
class FitData:
    """Counts per (model, configuration, task) row, as numpy arrays, with index arrays into the name lists.

    group_size is the effective group size (> 0): resolve per-channel first with law.effective_group_size.
    tier is per row (index into tier_names, by default 0=KM, 1=KA, 2=KR) and must agree with the task's tier.
    """

    params: np.ndarray
    bits: np.ndarray
    group_size: np.ndarray
    calib_samples: np.ndarray
    correct: np.ndarray
    n: np.ndarray
    chance: np.ndarray
    task: np.ndarray
    tier: np.ndarray
    family: np.ndarray
    task_names: list[str]
    family_names: list[str]
    tier_names: list[str] = field(default_factory=lambda: list(TIERS))
    # Which model each row measured (index into model_names). None: a model is a (family, N) pair, which is
    # wrong when a family holds two models of one size (LLaMA-1 13B and Llama-2 13B): their deviations from
    # the law are not shared.
    model: np.ndarray | None = None
    model_names: list[str] | None = None

    @classmethod
    def from_records(
        cls,
        *,
        params: Any,
        bits: Any,
        group_size: Any,
        calib_samples: Any,
        correct: Any,
        n: Any,
        chance: Any,
        task: Sequence[str],
        tier: Sequence[str],
        family: Sequence[str],
        tiers: Sequence[str] | None = None,
        model: Sequence[str] | None = None,
    ) -> FitData:
        """Build from per-row labels; tiers defaults to those present, in KM, KA, KR order; ``model`` names the
        model each row measured (default: one model per (family, N))."""
        tier_names = list(tiers) if tiers is not None else [t for t in TIERS if t in set(tier)]
        unknown = sorted(set(tier) - set(tier_names))
        if unknown:
            raise ValueError(f"rows have tier {unknown[0]!r}, not among the fitted tiers {tier_names}")
        task_names = sorted(set(task))
        family_names = sorted(set(family))
        model_names = sorted(set(model)) if model is not None else None
        model_idx = None if model_names is None else np.array([model_names.index(m) for m in model or ()], dtype=int)
        return cls(
            params=np.asarray(params, dtype=float),
            bits=np.asarray(bits, dtype=float),
            group_size=np.asarray(group_size, dtype=float),
            calib_samples=np.asarray(calib_samples, dtype=float),
            correct=np.asarray(correct),
            n=np.asarray(n),
            chance=np.asarray(chance, dtype=float),
            task=np.array([task_names.index(k) for k in task], dtype=int),
            tier=np.array([tier_names.index(t) for t in tier], dtype=int),
            family=np.array([family_names.index(f) for f in family], dtype=int),
            task_names=task_names,
            family_names=family_names,
            tier_names=tier_names,
            model=model_idx,
            model_names=model_names,
        )

    def __len__(self) -> int:
        return int(np.asarray(self.params).shape[0])

    @property
    def task_tier(self) -> np.ndarray:
        """Tier index of each task (validate() checks each task has exactly one)."""
        out = np.zeros(len(self.task_names), dtype=int)
        out[np.asarray(self.task, dtype=int)] = np.asarray(self.tier, dtype=int)
        return out

    def validate(self, *, allow_single_size: bool = False) -> list[str]:
        """Raise ValueError (one line) on unusable data; return identifiability warnings.

        A single model size leaves alpha unidentified: an error unless ``allow_single_size``, in which case
        the documented fallback applies (alpha's posterior is its prior, through the centred design) and a
        warning is returned. Any other factor that never varies (typically Cb and G in published tables) is a
        warning only: its exponent is its prior. Every fitted tier and task must have rows.
        """
        r = len(self)
        if r == 0:
            raise ValueError("no rows to fit")
        arrays = {
            "params": self.params,
            "bits": self.bits,
            "group_size": self.group_size,
            "calib_samples": self.calib_samples,
            "correct": self.correct,
            "n": self.n,
            "chance": self.chance,
            "task": self.task,
            "tier": self.tier,
            "family": self.family,
        }
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.shape != (r,):
                raise ValueError(f"{name} has shape {a.shape}; every column must have shape ({r},)")
            if a.dtype.kind not in "biuf":
                raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} has non-finite values (row {int(np.flatnonzero(~np.isfinite(a))[0])})")
        for name in ("correct", "n", "task", "tier", "family"):
            a = np.asarray(arrays[name])
            if np.any(a != np.round(a)):
                raise ValueError(f"{name} must hold integers")
        correct, n = np.asarray(self.correct), np.asarray(self.n)
        if np.any(correct < 0):
            raise ValueError(f"negative correct count in row {int(np.flatnonzero(correct < 0)[0])}")
        if np.any(n <= 0):
            raise ValueError(f"item count n must be positive (row {int(np.flatnonzero(n <= 0)[0])})")
        if np.any(correct > n):
            i = int(np.flatnonzero(correct > n)[0])
            raise ValueError(f"correct count {correct[i]:g} exceeds n = {n[i]:g} items in row {i}")
        chance = np.asarray(self.chance)
        if np.any((chance < 0) | (chance >= 1)):
            raise ValueError("chance levels must lie in [0, 1)")
        if np.any(np.asarray(self.group_size) <= 0):
            raise ValueError("group_size must be the effective size (> 0); resolve -1 with law.effective_group_size")
        law.check_domain(self.bits, self.group_size, self.calib_samples, self.params)
        for name, idx, names in (
            ("task", self.task, self.task_names),
            ("tier", self.tier, self.tier_names),
            ("family", self.family, self.family_names),
        ):
            idx = np.asarray(idx)
            if np.any((idx < 0) | (idx >= len(names))):
                raise ValueError(f"{name} index out of range: {len(names)} {name} names given")
        tier, task = np.asarray(self.tier, dtype=int), np.asarray(self.task, dtype=int)
        for t, name in enumerate(self.tier_names):
            if not np.any(tier == t):
                raise ValueError(f"tier {name} has no rows; fit only the tiers present, or add data for it")
        for k, name in enumerate(self.task_names):
            tiers_k = np.unique(tier[task == k])
            if tiers_k.size == 0:
                raise ValueError(f"task {name} has no rows; drop it from task_names")
            if tiers_k.size > 1:
                raise ValueError(f"task {name} appears in more than one tier; a task belongs to exactly one tier")
        if self.model is not None:
            mid = np.asarray(self.model)
            names = self.model_names or []
            if mid.shape != (r,) or np.any((mid < 0) | (mid >= len(names))):
                raise ValueError(f"model must be ({r},) indices into {len(names)} model names")
            for j in np.unique(mid):
                if np.unique(np.asarray(self.params)[mid == j]).size > 1:
                    raise ValueError(f"model {names[j]} has rows with different parameter counts; one model, one N")
        warnings = []
        if np.unique(np.asarray(self.params)).size < 2:
            msg = "a single model size: alpha (the N exponent) is not identifiable"
            if not allow_single_size:
                raise ValueError(msg + "; add a second model size, or allow_single_size=True to keep alpha's prior")
            warnings.append(msg + "; alpha is its prior")
        for name, exponent in (("bits", "beta"), ("calib_samples", "gamma"), ("group_size", "delta")):
            if np.unique(np.asarray(getattr(self, name))).size < 2:
                warnings.append(f"{name} never varies: {exponent} is its prior")
        return warnings


@dataclass(frozen=True)
class Design:
    """Centred law features and the index structure of the hierarchy, built once from numpy data.

    Model-tier pairs (one model = one (family, N)) carry the model effects; family-task pairs are the task laws
    a family's data can inform; ``helmert`` (P, C) maps the C within-(family, tier) task contrasts to the P
    family-task laws' deviations from their (family, tier) mean (orthonormal columns, each orthogonal to 1).
    """

    centre: np.ndarray  # (4,) mean of [ln N, ln log2 B, ln log2 Cb, ln G] over the rows (population laws)
    constant: np.ndarray  # (4,) bool: the factor never varies (its exponent is prior-only)
    family_centre: np.ndarray  # (F, 4) centre of each family's rows: its own value where the family never varies it
    x: np.ndarray  # (R, 4) features centred per family (family_centre)
    model: np.ndarray  # (R,) index of the (model, tier) pair each row belongs to
    n_pairs: int
    n_models: int
    pair_tier: np.ndarray  # (n_pairs,) tier of each (model, tier) pair
    pair_family: np.ndarray  # (n_pairs,) family of each (model, tier) pair
    pair_x: np.ndarray  # (n_pairs,) centred ln N of each (model, tier) pair
    ftask: np.ndarray  # (R,) index of the observed (family, task) pair each row belongs to
    ftask_family: np.ndarray  # (P,)
    ftask_task: np.ndarray  # (P,)
    ftask_tier: np.ndarray  # (P,)
    helmert: np.ndarray  # (P, C)
    n_tasks_ft: np.ndarray  # (F, T) observed tasks per (family, tier); 0 where the family has none
    unobserved: np.ndarray  # (U, 2) (family, task) pairs with no rows: their laws are prior draws

    @classmethod
    def of(cls, data: FitData) -> Design:
        raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 1:]  # drop the 1s
        constant = np.ptp(raw, axis=0) == 0
        centre = np.where(constant, raw[0], raw.mean(axis=0))
        fam, tier, task = (np.asarray(a, dtype=int) for a in (data.family, data.tier, data.task))
        # A factor one family never varies (Cb in every published table: 128 for Qwen3, 512 for Llama) is
        # centred on that family's value, so its exponent leaves that family's likelihood. Centred globally, it
        # would shift all of the family's rows together, exactly as the family's intercept does: a ridge that
        # only the priors bound, and no information.
        family_centre = np.tile(centre, (len(data.family_names), 1))
        for f in range(len(data.family_names)):
            own = raw[fam == f]
            if len(own):
                family_centre[f] = np.where(np.ptp(own, axis=0) == 0, own[0], centre)
        x = raw - family_centre[fam]
        model_id = np.asarray(data.params, dtype=float) if data.model is None else np.asarray(data.model, float)
        model_keys = np.stack([fam.astype(float), model_id], axis=1)
        _, model = np.unique(model_keys, axis=0, return_inverse=True)
        model = model.ravel()
        pairs, pair = np.unique(np.stack([model, tier], axis=1), axis=0, return_inverse=True)
        pair = pair.ravel()
        n_pairs = len(pairs)
        pair_family, pair_x = np.zeros(n_pairs, int), np.zeros(n_pairs)
        pair_family[pair], pair_x[pair] = fam, x[:, 0]
        ft, ftask = np.unique(np.stack([fam, task], axis=1), axis=0, return_inverse=True)
        ftask = ftask.ravel()
        task_tier = data.task_tier
        ft_tier = task_tier[ft[:, 1]]
        n_f, n_t, n_k = len(data.family_names), len(data.tier_names), len(data.task_names)
        n_tasks_ft = np.zeros((n_f, n_t), dtype=int)
        blocks = []
        for f in range(n_f):
            for t in range(n_t):
                members = np.flatnonzero((ft[:, 0] == f) & (ft_tier == t))
                n_tasks_ft[f, t] = members.size
                if members.size > 1:
                    blocks.append((members, _helmert(members.size)))
        helmert = np.zeros((len(ft), sum(h.shape[1] for _, h in blocks)))
        col = 0
        for members, h in blocks:
            helmert[np.ix_(members, np.arange(col, col + h.shape[1]))] = h
            col += h.shape[1]
        seen = {(int(a), int(b)) for a, b in ft}
        unobserved = np.array([(f, k) for f in range(n_f) for k in range(n_k) if (f, k) not in seen], dtype=int)
        return cls(
            centre=centre,
            constant=constant,
            family_centre=family_centre,
            x=x,
            model=pair.astype(int),
            n_pairs=n_pairs,
            n_models=int(model.max()) + 1,
            pair_tier=pairs[:, 1].astype(int),
            pair_family=pair_family,
            pair_x=pair_x,
            ftask=ftask.astype(int),
            ftask_family=ft[:, 0].astype(int),
            ftask_task=ft[:, 1].astype(int),
            ftask_tier=ft_tier.astype(int),
            helmert=helmert,
            n_tasks_ft=n_tasks_ft,
            unobserved=unobserved.reshape(-1, 2),
        )


def _helmert(k: int) -> np.ndarray:
    """(k, k-1) orthonormal columns orthogonal to the ones vector: x -> H^T x are k-1 independent contrasts."""
    h = np.zeros((k, k - 1))
    for j in range(1, k):
        h[:j, j - 1] = 1.0 / np.sqrt(j * (j + 1))
        h[j, j - 1] = -j / np.sqrt(j * (j + 1))
    return h


def ln_a_from_centred(c: Any, slopes: Any, centre: np.ndarray) -> Any:
    """ln A on the law's scale from the centred intercept c and the exponents (last axis: alpha, beta, ...);
    centre (..., 4) broadcasts against slopes (per family: family_centre[:, None, :] for (S, F, T, d) draws)."""
    return c - (slopes * centre[..., : slopes.shape[-1]]).sum(axis=-1)
