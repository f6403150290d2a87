"""The collapse below the smooth law: fitted on published configurations, mixed into every prediction."""

from __future__ import annotations

import numpy as np
import pytest

import advisor
from fit.collapse import TAU, WEIGHT_SD, Measured, configurations, fit_collapse
from fit.pipeline import hidden_size_of, read_rows
from strata.collapse import mix, probability
from strata.profile import CollapseModel


@pytest.fixture(scope="module")
def model() -> CollapseModel:
    return fit_collapse(configurations(read_rows(), hidden_size_of), "published")


def p(model: CollapseModel, family: str, bits: float, group: float, params_b: float) -> float:
    return float(probability(model, family, bits, group, params_b * 1e9).mean())


def test_the_published_collapses_are_what_the_model_says(model):
    assert model.n_collapsed >= 20 and model.n_configs > 2 * model.n_collapsed
    assert p(model, "Qwen3", 2, 128, 8.2) > 0.7  # every published 2-bit Qwen3 configuration collapsed
    assert p(model, "Qwen3", 8, 128, 8.2) < 0.02  # none at 8 bits
    # Meta-Llama-3-8B collapses at 3 bits per-channel, Llama-2-7B at 3 bits G=128 does not
    assert p(model, "Llama-3", 3, 4096, 8.0) > 2 * p(model, "Llama-2", 3, 128, 7.0)
    assert p(model, "Llama-3", 3, 4096, 8.0) > p(model, "Llama-3", 4, 4096, 8.0)


def test_a_family_not_fitted_is_uncertain_not_refused(model):
    def logit(family: str) -> np.ndarray:
        q = probability(model, family, 3, 3584, 9.2e9)[:, 0]
        return np.log(q / (1 - q))

    assert np.std(logit("Gemma-2")) > np.std(logit("Qwen3"))  # its family shift drawn with tau on top


def test_the_fit_is_reproducible(model):
    again = fit_collapse(configurations(read_rows(), hidden_size_of), "published")
    # Newton's method, a Cholesky factor and seeded proposals: the same draws up to rounding (6 decimals kept)
    np.testing.assert_allclose(np.asarray(again.draws), np.asarray(model.draws), atol=2e-6)


def test_mixing_replaces_draws_with_a_retained_fraction_of_the_reference(model):
    smooth = np.full((2000, 2), 0.6)
    ref = np.full((2000, 1), 0.7)
    out = mix(smooth, ref, np.array([[0.0, 1.0]]), model, "m")
    assert np.all(out[:, 0] == pytest.approx(0.6))  # never collapses
    kept = 0.7 * np.asarray(model.retained)  # always collapsed: each draw a retained fraction of the reference
    assert np.all(np.min(np.abs(out[:, [1]] - kept[None, :]), axis=1) < 1e-9)
    assert np.median(out[:, 1]) < 0.7 * 0.5  # collapsed configurations keep less than half, by definition
    half = mix(smooth, ref, np.full((1, 1), 0.5), model, "m")[:, 0]
    assert 0.45 < np.mean(half < 0.6) < 0.55  # mixed in with its probability (2000 draws: ±0.034 at 3 sd)


def test_two_bits_are_answered_from_the_collapse_and_left_out_unless_asked():
    pred = advisor.predict("qwen3-8b", bits=2, group_size=128, calib_samples=128)  # no --extrapolate needed
    assert pred.tiers["KA"].mean < 0.3  # published: Qwen3-8B keeps ~5% of its above-chance accuracy at 2 bits
    rec = advisor.recommend("qwen3-8b", min_ka=0.1)
    assert all(c.config.bits >= 3 for c in [rec.recommendation, *rec.alternatives] if c is not None)
    assert any(e.startswith("2-bit: a collapse regime, left out unless asked") for e in rec.excluded)
    asked = advisor.recommend("qwen3-8b", min_ka=0.5, bits=(2, 3, 4))
    assert asked.recommendation is not None and asked.recommendation.config.bits >= 3


def test_the_llama_3_collapse_is_no_longer_recommended_with_confidence():
    """The issue's case: 3-bit per-channel collapses on Meta-Llama-3-8B (ARC-Easy 38.8 from 80.1)."""
    pred = advisor.predict("llama-3.1-8b", bits=3, group_size=-1, calib_samples=128)
    assert pred.tiers["KA"].lo is not None and pred.tiers["KA"].lo < 0.25  # the collapse is inside the interval
    rec = advisor.recommend("llama-3.1-8b", min_ka=0.4, memory_gb=5)
    if rec.recommendation is not None:
        c = rec.recommendation
        assert not (c.config.bits == 3 and c.config.group_size == -1 and (c.prob_all or 0) > 0.9)


def test_the_draws_are_the_exact_posterior_where_the_laplace_gaussian_is_not():
    """Nearly separated data, as the published tables are (5 of 6 collapse at 2 bits, none at 3 or 4): the
    posterior of P(collapse) is one-sided, and the symmetric Laplace Gaussian put P(3 bits) at 0.092 where the
    exact posterior (quadrature below) says 0.055. One family, one G and N: the posterior is two-dimensional, an
    intercept (its prior sd combines the weights' and the family shift's) and a slope in B."""
    configs = [
        Measured("F", f"m{b}{i}", float(b), 128.0, 7e9, (0.1,) if i < k else (0.9,))
        for b, k in ((2, 5), (3, 0), (4, 0))
        for i in range(6)
    ]
    fitted = fit_collapse(configs, "toy")
    bits = np.array([c.bits for c in configs])
    y = np.array([c.collapsed for c in configs], float)
    a, s = np.meshgrid(np.linspace(-60, 60, 801), np.linspace(-80, 40, 801), indexing="ij")
    eta = a[..., None] + s[..., None] * (bits - bits.mean())
    log_prior = -(a**2) / (2 * (WEIGHT_SD**2 + TAU**2)) - s**2 / (2 * WEIGHT_SD**2)
    log_post = (y * eta - np.logaddexp(0, eta)).sum(-1) + log_prior
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    for b in (2.5, 3.0, 3.5):
        exact = float(np.sum(w / (1 + np.exp(-(a + s * (b - bits.mean()))))))
        got = p(fitted, "F", b, 128, 7.0)
        # 200 resampled draws: a Monte-Carlo error of ~0.005 at 2.5 bits, relatively less further out
        assert abs(got - exact) < 0.015 and abs(got - exact) < 0.25 * exact, (b, got, exact)
