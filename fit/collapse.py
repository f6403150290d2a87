"""Fit the collapse probability (``strata.collapse``) on measured configurations, collapsed and not.

One observation per configuration of a model in a source (its tasks measured together, on every accuracy
metric): collapsed when the median
over its tasks of retained chance-adjusted accuracy, quantized / unquantized of the same source, is below
``strata.collapse.THRESHOLD``. Tasks whose unquantized score is within 0.1 of chance carry no ratio and are left
out, as are configurations of unknown group size.

The logistic fit is a maximum a posteriori with a Laplace approximation, by Newton's method on a problem of four
weights plus one intercept shift per family (a handful of parameters: a sampler would add nothing but time):
weights ~ N(0, 5^2) (weak: the data move them), family shifts ~ N(0, TAU^2). TAU is fixed, not estimated: the
published tables hold five or six families, too few to pin a between-family sd; 1.5 on the logit scale lets one
family's odds differ from the population's by a factor of ~4.5 at one sd, what Llama-3 vs Llama-2 shows at 3 bits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from strata.collapse import design
from strata.law import PER_CHANNEL
from strata.metric import ACCURACY_METRICS, law_task, metric_base
from strata.profile import COLLAPSE_THRESHOLD as THRESHOLD
from strata.profile import CollapseModel
from strata.rows import ResultRow

TAU = 1.5
WEIGHT_SD = 5.0
DRAWS = 200
MIN_ADJ = 0.1  # an unquantized score this close to chance gives no meaningful retained fraction


@dataclass(frozen=True)
class Measured:
    """One measured configuration of one model in one source."""

    family: str
    model: str
    bits: float
    group_eff: float  # per-channel resolved to the input width
    params: float
    tasks: tuple[float, ...]  # retained chance-adjusted fraction per task
    key: tuple[object, ...] = ()  # (source, model, stage, bits, group size, Cb): its rows' configuration

    @property
    def retained(self) -> float:
        return float(np.median(self.tasks))

    @property
    def collapsed(self) -> bool:
        return self.retained < THRESHOLD


def configurations(
    rows: Iterable[ResultRow], hidden_of: Callable[[ResultRow], int | None], method: str = "GPTQ"
) -> list[Measured]:
    """One record per measured configuration: family, bits, effective G, N, median retained fraction, per task."""
    rows = list(rows)

    def accuracy(r: ResultRow) -> bool:
        return metric_base(r.metric) in ACCURACY_METRICS and r.accuracy is not None

    ref = {
        (r.source, r.model, r.stage, law_task(r.task, r.metric)): r
        for r in rows
        if r.method.upper() in ("FP16", "BF16") and accuracy(r)
    }
    Key = tuple[str, str, str, float, int, int | None]
    groups: dict[Key, list[float]] = defaultdict(list)
    meta: dict[Key, ResultRow] = {}
    for r in rows:
        if r.method.upper() != method.upper() or not accuracy(r) or r.suspect or r.accuracy is None:
            continue
        if r.group_size is None or r.chance is None or r.bits >= 16:
            continue
        base = ref.get((r.source, r.model, r.stage, law_task(r.task, r.metric)))
        if base is None or base.accuracy is None:
            continue
        a0 = (base.accuracy - r.chance) / (1 - r.chance)
        if a0 < MIN_ADJ:
            continue
        key: Key = (r.source, r.model, r.stage, r.bits, r.group_size, r.calib_samples)
        groups[key].append(((r.accuracy - r.chance) / (1 - r.chance)) / a0)
        meta[key] = r
    out = []
    for key, ratios in groups.items():
        r = meta[key]
        width = hidden_of(r) if r.group_size == PER_CHANNEL else r.group_size
        if width is None:
            continue
        out.append(Measured(r.family, r.model, r.bits, float(width), r.params_b * 1e9, tuple(ratios), key))
    return out


def fit_collapse(configs: list[Measured], source: str, seed: int = 0) -> CollapseModel:
    """MAP + Laplace fit of the collapse probability; raises ValueError when the data hold no collapse or none
    that is not one (the probability is then not identified)."""
    if not configs:
        raise ValueError("no configurations with an unquantized reference to fit the collapse on")
    y = np.array([c.collapsed for c in configs], float)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("the data hold no collapsed and non-collapsed configurations both; the collapse is not fitted")
    fams = sorted({c.family for c in configs})
    x = design([c.bits for c in configs], [c.group_eff for c in configs], [c.params for c in configs])
    f = np.zeros((len(configs), len(fams)))
    for i, c in enumerate(configs):
        f[i, fams.index(c.family)] = 1.0
    X = np.hstack([x, f])
    # Features are centred for the solve (the intercept absorbs the means), so the Newton steps are well scaled.
    centre = np.concatenate([[0.0], x[:, 1:].mean(axis=0), np.zeros(len(fams))])
    Xc = X - centre
    prior = np.concatenate([[WEIGHT_SD**-2] * 4, [TAU**-2] * len(fams)])
    theta = np.zeros(X.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(Xc @ theta)))
        grad = Xc.T @ (y - p) - prior * theta
        hess = (Xc * (p * (1 - p))[:, None]).T @ Xc + np.diag(prior)
        step = np.linalg.solve(hess, grad)
        theta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-(Xc @ theta)))
    hess = (Xc * (p * (1 - p))[:, None]).T @ Xc + np.diag(prior)
    chol = np.linalg.cholesky(np.linalg.inv(hess))  # unique factor: the same draws on every CPU
    z = np.random.default_rng(seed).standard_normal((DRAWS, X.shape[1]))
    samples = theta + z @ chol.T
    samples[:, 0] -= samples[:, 1:] @ centre[1:]  # back to uncentred features
    collapsed = [t for c in configs if c.collapsed for t in c.tasks]
    return CollapseModel(
        draws=[[round(float(v), 6) for v in s[:4]] for s in samples],
        family_effect={fam: [round(float(v), 6) for v in samples[:, 4 + j]] for j, fam in enumerate(fams)},
        tau=TAU,
        retained=sorted(round(float(np.clip(v, -0.5, 1.0)), 6) for v in collapsed),
        n_configs=len(configs),
        n_collapsed=int(y.sum()),
        source=source,
    )
