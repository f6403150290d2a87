"""The paper's OLS procedure recovers the law it is given, pins what data cannot identify, and says so."""

import numpy as np
import pytest

from fit.ols import FitError, identifiable, ols_fit, paper_exponent
from strata.law import COEF_NAMES, LawCoef, design, four_factor, linearize

TRUE = LawCoef(ln_a=7.5, alpha=-0.36, beta=-1.07, gamma=-0.03, delta=0.07)


def grid(seed=0):
    rng = np.random.default_rng(seed)
    rows = [(n, b, g, c) for n in (0.6e9, 1.7e9, 4e9, 8e9, 14e9) for b in (3, 4, 8)
            for g in (32, 64, 128, 1024) for c in (8, 32, 128, 1024)]  # fmt: skip
    n, b, g, c = (np.array(v, float) for v in zip(*rows, strict=True))
    models = [f"m{int(x)}" for x in n]
    return n, b, g, c, models, rng


def test_recovers_known_coefficients_from_noisy_law_data():
    n, b, g, c, _models, rng = grid()
    z = np.log(-np.log(four_factor(TRUE, n, b, g, c))) + rng.normal(0, 0.02, n.size)
    res = ols_fit(design(n, b, g, c), z, fixed={})
    assert res.coef[0] == pytest.approx(TRUE.ln_a, abs=0.15)  # ln A carries the extrapolation to N = 1
    assert res.coef[1:] == pytest.approx(TRUE.as_tuple()[1:], abs=0.02)
    assert res.adj_r2 > 0.99
    se = res.se
    for k, true in zip(COEF_NAMES, TRUE.as_tuple(), strict=True):
        assert abs(res.coef[COEF_NAMES.index(k)] - true) < 4 * se[k]


def test_adjusted_r2_follows_its_definition():
    n, b, g, c, _models, rng = grid(1)
    z = np.log(-np.log(four_factor(TRUE, n, b, g, c))) + rng.normal(0, 0.3, n.size)
    res = ols_fit(design(n, b, g, c), z, fixed={})
    r2 = 1 - np.sum(res.residuals**2) / np.sum((z - z.mean()) ** 2)
    assert res.r2 == pytest.approx(r2)
    assert res.adj_r2 == pytest.approx(1 - (1 - r2) * (n.size - 1) / (n.size - 4 - 1))


def test_factor_constant_within_every_model_is_not_identifiable():
    n, b, g, c, models, _ = grid()
    c = np.where(n > 5e9, 512.0, 128.0)  # Cb differs only between models, as across published papers
    free = identifiable(design(n, b, g, c), models)
    assert "gamma" not in free and {"alpha", "beta", "delta"} <= set(free)


def test_pinned_exponent_is_held_at_its_value():
    n, b, g, c, _, _rng = grid()
    c = np.full_like(n, 128.0)
    z = np.log(-np.log(four_factor(TRUE, n, b, g, c)))
    res = ols_fit(design(n, b, g, c), z, fixed={"gamma": paper_exponent("KM", "gamma")})
    assert res.coef[3] == -0.04 and "gamma" not in res.se
    assert res.coef[1:3] == pytest.approx([TRUE.alpha, TRUE.beta], abs=1e-9)


def test_collinear_factors_are_refused():
    n, b, _g, c, _, _ = grid()
    with pytest.raises(FitError, match="collinear"):
        ols_fit(design(n, b, n / 1e7, c), np.zeros_like(n), fixed={})  # ln G = ln N - const


def test_too_few_rows_are_refused():
    X = design(np.array([1e9, 2e9]), 4, 128, 128)
    with pytest.raises(FitError, match="rows"):
        ols_fit(X, np.zeros(2), fixed={})


def test_linearized_fit_survives_accuracies_at_the_bounds():
    n, b, g, c, _models, _ = grid()
    y = four_factor(TRUE, n, b, g, c)
    y[:3] = [-0.02, 0.0, 1.0]  # below chance, at chance, perfect
    z, clipped = linearize(y, np.full_like(y, 1000))
    res = ols_fit(design(n, b, g, c), z, fixed={})
    assert clipped.sum() == 3 and np.all(np.isfinite(res.coef))
