"""The law core: one definition, correct at and beyond its bounds, the same on numpy and jax."""

import numpy as np
import pytest

from strata.law import (
    LawCoef,
    baseline,
    check_domain,
    denormalize,
    design,
    effective_group_size,
    four_factor,
    linearize,
    normalize,
)

COEF = LawCoef(ln_a=6.87, alpha=-0.322, beta=-1.07, gamma=-0.103, delta=0.117)


def test_normalize_is_chance_adjusted_and_invertible():
    assert normalize(0.25, 0.25) == 0.0
    assert normalize(1.0, 0.25) == 1.0
    assert normalize(0.625, 0.25) == pytest.approx(0.5)
    acc = np.array([0.3, 0.7, 0.95])
    assert np.allclose(denormalize(normalize(acc, 0.5), 0.5), acc)


def test_normalize_does_not_clip_below_chance_or_at_100_percent():
    y = normalize(np.array([0.20, 1.0]), 0.25)
    assert y[0] < 0 and y[1] == 1.0  # kept, not vanished: below chance is negative


def test_per_channel_group_is_the_input_width():
    g = effective_group_size(np.array([128, -1, 32]), 4096)
    assert g.tolist() == [128, 4096, 32]


def test_four_factor_matches_the_formula_of_the_paper():
    n, b, g, c = 8.2e9, 3, 128, 128
    neg_ln = np.exp(COEF.ln_a) * n**COEF.alpha * np.log2(b) ** COEF.beta * np.log2(c) ** COEF.gamma * g**COEF.delta
    assert four_factor(COEF, n, b, g, c) == pytest.approx(np.exp(-neg_ln), rel=1e-12)


def test_law_moves_the_right_way_in_each_factor():
    base = four_factor(COEF, 1e9, 3, 128, 128)
    assert four_factor(COEF, 1e10, 3, 128, 128) > base  # bigger model: better (alpha < 0)
    assert four_factor(COEF, 1e9, 4, 128, 128) > base  # more bits: better (beta < 0)
    assert four_factor(COEF, 1e9, 3, 32, 128) > base  # smaller groups: better (delta > 0)
    assert four_factor(COEF, 1e9, 3, 128, 1024) > base  # more calibration: better (gamma < 0)


def test_baseline_is_the_four_factor_law_without_g_and_cb():
    b = LawCoef(COEF.ln_a, COEF.alpha, COEF.beta)
    assert baseline(b, 4e9, 4) == pytest.approx(four_factor(b, 4e9, 4, 999, 77))


def test_draws_broadcast_against_configurations():
    draws = LawCoef(*(np.full((5, 1), v) for v in COEF.as_tuple()))
    out = four_factor(draws, 1e9, np.array([[3, 4, 8]]), 128, 128)
    assert out.shape == (5, 3) and np.all((out > 0) & (out < 1))


def test_linearize_clips_by_half_an_item_and_reports_it():
    z, clipped = linearize(np.array([-0.1, 0.5, 1.0]), np.array([100, 100, 100]))
    assert clipped.tolist() == [True, False, True]
    assert np.all(np.isfinite(z))
    assert z[1] == pytest.approx(np.log(-np.log(0.5)))
    assert z[0] == pytest.approx(np.log(-np.log(1 / 200)))


def test_design_columns_are_the_linearized_law():
    X = design(1e9, 4, 128, 128)
    assert X.tolist() == pytest.approx([1.0, np.log(1e9), np.log(2.0), np.log(7.0), np.log(128)])


@pytest.mark.parametrize(
    "args, word",
    [((1, 128, 128, 1e9), "bits"), ((4, 0, 128, 1e9), "group"), ((4, 128, 1, 1e9), "calibration"),
     ((4, 128, 128, 0), "params"), ((np.nan, 128, 128, 1e9), "finite")],
)  # fmt: skip
def test_check_domain_names_the_bad_factor(args, word):
    with pytest.raises(ValueError, match=word):
        check_domain(*args)


def test_same_law_runs_on_jax():
    jnp = pytest.importorskip("jax.numpy")
    out = four_factor(COEF, jnp.array([1e9, 8e9]), 4, 128, 128, xp=jnp)
    ref = four_factor(COEF, np.array([1e9, 8e9]), 4, 128, 128)
    assert np.allclose(np.asarray(out), ref, rtol=1e-5)
