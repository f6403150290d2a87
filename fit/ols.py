"""The paper's fitting procedure: ordinary least squares on the linearized law, with adjusted R².

    ln(-ln Acc_adj) = ln A + alpha ln N + beta ln log2 B + gamma ln log2 Cb + delta ln G

An exponent is fitted only when the data can identify it: alpha needs two or more model sizes; beta, gamma and
delta need their factor to vary *within* some model (published tables vary Cb only between papers, where it is
confounded with everything else that differs between them). An exponent that cannot be identified is pinned to
the paper's reported value (``PAPER_EXPONENTS``) and recorded as fixed in the profile, never silently estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from strata.errors import UserError
from strata.law import COEF_NAMES

# Secondary summaries of arXiv 2508.18609: used to pin what data cannot identify, and as
# prior centres by the Bayesian fit; never as results.
PAPER_EXPONENTS: dict[str, dict[str, float]] = {
    "general": {"alpha": -0.36, "beta": -1.07, "gamma": -0.03, "delta": 0.07},
    "KM": {"gamma": -0.04},
    "KA": {"alpha": -0.40},
    "KR": {"beta": -1.28, "delta": 0.085},  # beta reported between -1.2 and -1.36
}


def paper_exponent(tier: str, name: str) -> float:
    return PAPER_EXPONENTS.get(tier, {}).get(name, PAPER_EXPONENTS["general"][name])


class FitError(UserError):
    """Data that cannot support the fit asked for; one line naming what is missing."""


@dataclass
class OlsResult:
    coef: np.ndarray  # (5,) in COEF_NAMES order; fixed entries hold their pinned value
    cov: np.ndarray  # (5, 5) sampling covariance; zero rows/columns for fixed entries
    fixed: dict[str, float]
    n: int
    r2: float
    adj_r2: float
    residuals: np.ndarray = field(repr=False)
    sigma2: float = 0.0  # residual variance on the linearized scale

    def predict_interval(self, X: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Linearized prediction and its predictive interval (coefficient and residual noise), per row of X."""
        from statistics import NormalDist

        zq = NormalDist().inv_cdf(0.5 + level / 2)
        mean = X @ self.coef
        sd = np.sqrt(self.sigma2 + np.einsum("ij,jk,ik->i", X, self.cov, X))
        return mean, mean - zq * sd, mean + zq * sd

    @property
    def se(self) -> dict[str, float]:
        return {k: float(np.sqrt(self.cov[i, i])) for i, k in enumerate(COEF_NAMES) if k not in self.fixed}


def identifiable(X: np.ndarray, model_ids: Sequence[str], columns: Sequence[str] = COEF_NAMES) -> list[str]:
    """Names of the exponents (design columns 1..) that the data can identify, by the rule in the module doc."""
    ids = np.asarray(model_ids)
    out = []
    for j, name in enumerate(columns):
        if j == 0:
            continue
        col = X[:, j]
        if name == "alpha":
            ok = np.unique(np.round(col, 9)).size >= 2
        else:
            ok = any(np.ptp(col[ids == m]) > 1e-9 for m in np.unique(ids))
        if ok:
            out.append(name)
    return out


def ols_fit(X: np.ndarray, z: np.ndarray, fixed: dict[str, float], columns: Sequence[str] = COEF_NAMES) -> OlsResult:
    """Least squares of z on the design X (columns named by ``columns``), holding ``fixed`` columns at given values."""
    X, z = np.asarray(X, float), np.asarray(z, float)
    free = [j for j, c in enumerate(columns) if c not in fixed]
    offset = sum((X[:, j] * fixed[c] for j, c in enumerate(columns) if c in fixed), np.zeros_like(z))
    n, k = X.shape[0], len(free)
    if n <= k:
        raise FitError(f"{n} rows cannot fit {k} coefficients; add data or pin more exponents")
    Xf = X[:, free]
    if np.linalg.matrix_rank(Xf) < k:
        raise FitError("the factors are collinear in this data (e.g. model size confounded with another factor)")
    beta, *_ = np.linalg.lstsq(Xf, z - offset, rcond=None)
    coef = np.array([fixed.get(c, 0.0) for c in columns], float)
    coef[free] = beta
    resid = z - X @ coef
    ss_res, ss_tot = float(resid @ resid), float(((z - z.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    p = k - 1  # regressors besides the intercept
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1) if n - p - 1 > 0 else float("nan")
    cov = np.zeros((len(columns), len(columns)))
    cov[np.ix_(free, free)] = ss_res / (n - k) * np.linalg.inv(Xf.T @ Xf)
    return OlsResult(coef, cov, dict(fixed), n, r2, adj, resid, ss_res / (n - k))


def sample_coefficients(result: OlsResult, draws: int, seed: int = 0) -> np.ndarray:
    """Draws (draws, 5) from the OLS sampling distribution of the coefficients (fixed ones constant).

    Seeded standard normals times the Cholesky factor of the free coefficients' covariance: the factor is unique
    (positive diagonal), so the same seed gives the same draws on every CPU up to rounding. numpy's
    ``multivariate_normal`` goes through an SVD or eigendecomposition instead, whose signs and order the local
    BLAS picks, so its draws differ entirely between machines.
    """
    free = [j for j in range(len(COEF_NAMES)) if result.cov[j, j] > 0]  # fixed or absent: zero rows, constant
    z = np.random.default_rng(seed).standard_normal((draws, len(free)))
    out = np.tile(np.asarray(result.coef, float), (draws, 1))
    if free:
        chol = np.linalg.cholesky(result.cov[np.ix_(free, free)])
        out[:, free] += z @ chol.T
    return out
