"""Fit the collapse probability (``strata.collapse``) on measured configurations, collapsed and not.

One observation per configuration of a model in a source (its tasks measured together, on every accuracy
metric): collapsed when the median
over its tasks of retained chance-adjusted accuracy, quantized / unquantized of the same source, is below
``strata.collapse.THRESHOLD``. Tasks whose unquantized score is within 0.1 of chance carry no ratio and are left
out, as are configurations of unknown group size.

The logistic fit is a maximum a posteriori by Newton's method on a problem of four weights plus one intercept
shift per family (a handful of parameters), weights ~ N(0, 5^2) (weak: the data move them), family shifts
~ N(0, TAU^2). Its posterior is drawn by importance sampling: proposals from the Laplace approximation (the
Gaussian at the MAP with the inverse Hessian as covariance) widened ``PROPOSAL_SCALE``-fold, weighted by the exact
posterior over the proposal density, then resampled. The Laplace Gaussian alone is symmetric, and the published
configurations are nearly separated (every 2-bit one but one collapsed, none at 3 bits G=128 or 4 bits): there the
true posterior is one-sided, steep transitions stay plausible and shallow ones do not. Its symmetric draws carried
as many too-shallow slopes as steep ones, and so a collapse probability of 7.0% at 4 bits per channel for a new
8B family (3.9% reweighted), which put the collapse inside 90% intervals no held-out row fell in. Eleven
parameters and a cheap likelihood: reweighting takes a second where a sampler's compile alone takes several, and
the leave-one-out validation refits this model some thirty times.
TAU is fixed, not estimated: the
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
PROPOSALS = 100_000  # importance-sampling proposals; the shipped data give an effective sample size of ~1,000
PROPOSAL_SCALE = 2.0  # the Laplace covariance's sd widened twofold, so the proposal covers the posterior's long side
CHUNK = 10_000  # proposals scored at a time (memory: CHUNK x configurations)
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
    """The collapse probability's posterior (MAP, then Laplace proposals reweighted); raises ValueError when the
    data hold no collapse or none that is not one (the probability is then not identified)."""
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
    samples = _posterior_draws(Xc, y, prior, theta, hess, seed)
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


def importance_weights(
    Xc: np.ndarray, y: np.ndarray, prior: np.ndarray, proposals: np.ndarray, log_q: np.ndarray
) -> np.ndarray:
    """Normalised weights of ``proposals`` (M, P) for the logistic posterior with N(0, 1/prior) priors, given each
    proposal's log density under the proposal distribution (up to a constant)."""
    log_w = np.empty(len(proposals))
    for start in range(0, len(proposals), CHUNK):
        t = proposals[start : start + CHUNK]
        eta = t @ Xc.T
        log_lik = (y * eta - np.logaddexp(0.0, eta)).sum(axis=1)
        log_w[start : start + CHUNK] = log_lik - 0.5 * (t**2 * prior).sum(axis=1) - log_q[start : start + CHUNK]
    w = np.exp(log_w - log_w.max())
    return np.asarray(w / w.sum())


def effective_sample_size(w: np.ndarray) -> float:
    return float(1.0 / np.sum(w**2))


def _posterior_draws(
    Xc: np.ndarray, y: np.ndarray, prior: np.ndarray, theta: np.ndarray, hess: np.ndarray, seed: int
) -> np.ndarray:
    """DRAWS posterior draws of the (centred) parameters: Laplace proposals reweighted to the exact posterior,
    resampled systematically (one seeded uniform: the same draws on every CPU for the same weights)."""
    chol = np.linalg.cholesky(np.linalg.inv(hess))  # unique factor: the same proposals on every CPU
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((PROPOSALS, len(theta)))
    proposals = theta + PROPOSAL_SCALE * z @ chol.T
    w = importance_weights(Xc, y, prior, proposals, -0.5 * np.sum(z**2, axis=1))
    if effective_sample_size(w) < DRAWS:  # the proposal misses the posterior (never on the published data):
        return np.asarray(theta + z[:DRAWS] @ chol.T)  # the Laplace draws, rather than a few repeated ones
    positions = (rng.uniform() + np.arange(DRAWS)) / DRAWS
    idx = np.minimum(np.searchsorted(np.cumsum(w), positions), len(w) - 1)
    return np.asarray(proposals[idx])
