"""Specification of the Bayesian stratified law (fit.bayes) and its inference (fit.infer).

Recovery tests simulate counts from the model itself (fit.bayes.simulate) at known parameters and check the
posterior brackets them; the calibration test draws whole data sets from the prior and checks the 90% intervals
cover the truth 90% of the time; bad-input tests check each refusal is one clear line.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numpyro")

from fit import bayes, infer

TRUE_LAWS = np.array(
    [  # per family (qwen3, llama3) and tier (KM, KA, KR): c, alpha, beta, gamma, delta on the centred scale
        [[0.0, -0.36, -1.07, -0.04, 0.07], [-0.3, -0.40, -1.07, -0.03, 0.07], [0.3, -0.36, -1.28, -0.03, 0.085]],
        [[0.2, -0.32, -1.17, -0.03, 0.06], [-0.1, -0.36, -1.17, -0.02, 0.06], [0.5, -0.32, -1.38, -0.02, 0.075]],
    ]
)


def _truth(tiers: list[str]) -> dict[str, np.ndarray]:
    idx = [bayes.Priors().tier_names.index(t) for t in tiers]
    return {
        "family_laws": TRUE_LAWS[:, idx],
        "tau": np.array([0.3, 0.05, 0.15, 0.02, 0.02]),
        "sigma": np.array([0.5, 0.05, 0.15, 0.02, 0.02]),
        "omega": np.full(len(tiers), 0.1),
        "log_phi": np.log(np.full(len(tiers), 300.0)),
    }


def _small(seed: int = 0, num_configs: int = 60, tiers: tuple[str, ...] = ("KM", "KA", "KR")) -> bayes.FitData:
    return bayes.synthetic_rows(num_configs, tasks_per_tier=1, tiers=tiers, seed=seed)


# --- bad input ---------------------------------------------------------------------------------------------------


def _with(data: bayes.FitData, **changes: object) -> bayes.FitData:
    return bayes.FitData(**{**data.__dict__, **changes})


@pytest.fixture(scope="module")
def data() -> bayes.FitData:
    d, _ = bayes.simulate(_small(), seed=0, truth=_truth(["KM", "KA", "KR"]))
    return d


def test_valid_data_reports_constant_factors_as_prior_only(data: bayes.FitData) -> None:
    assert data.validate() == []
    fixed = _with(data, calib_samples=np.full(len(data), 128.0))
    assert fixed.validate() == ["calib_samples never varies: gamma is its prior"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"correct": d.n + 1}, "exceeds n"),
        (lambda d: {"correct": -d.correct - 1}, "negative correct count"),
        (lambda d: {"params": np.where(np.arange(len(d)) == 3, np.nan, d.params)}, "params has non-finite"),
        (lambda d: {"chance": np.full(len(d), np.inf)}, "chance has non-finite"),
        (lambda d: {"n": np.zeros(len(d), dtype=int)}, "n must be positive"),
        (lambda d: {"group_size": np.full(len(d), -1.0)}, "effective_group_size"),
        (lambda d: {"tier_names": [*d.tier_names, "KX"]}, "tier KX has no rows"),
        (lambda d: {"params": np.full(len(d), 8e9)}, "single model size"),
        (lambda d: {"bits": np.ones(len(d))}, "bits must be > 1"),
    ],
)
def test_bad_input_is_one_clear_error(data: bayes.FitData, change, message: str) -> None:
    bad = _with(data, **change(data))
    with pytest.raises(ValueError, match=message) as err:
        bad.validate()
    assert "\n" not in str(err.value)


def test_single_model_size_fallback_keeps_alpha_at_its_prior(data: bayes.FitData) -> None:
    one = _with(data, params=np.full(len(data), 8e9))
    assert "alpha is its prior" in one.validate(allow_single_size=True)[0]


def test_fitting_a_tier_without_rows_or_an_unknown_law_is_refused(data: bayes.FitData) -> None:
    with pytest.raises(ValueError, match="tier KX has no rows"):
        infer.run_svi(_with(data, tier_names=[*data.tier_names, "KX"]), steps=20)
    with pytest.raises(ValueError, match="unknown law form 'cubic'"):
        infer.run_svi(data, steps=20, law_form="cubic")
    with pytest.raises(ValueError, match="unknown likelihood"):
        infer.run_svi(data, steps=20, likelihood="poisson")


def test_fast_lgamma_matches_jax() -> None:
    from jax.scipy.special import gammaln

    x = np.logspace(-7, 5, 2000)
    assert np.max(np.abs(np.asarray(bayes.lgamma(x)) - np.asarray(gammaln(x)))) < 1e-9


def test_a_factor_that_never_varies_does_not_touch_the_likelihood(data: bayes.FitData) -> None:
    import jax
    from numpyro.infer.util import log_likelihood

    fixed = _with(data, calib_samples=np.full(len(data), 128.0))
    design = bayes.Design.of(fixed)
    assert design.constant.tolist() == [False, False, True, False]
    _, sites = bayes.simulate(fixed, seed=1)
    latent = infer.latent_sites(sites)
    with jax.enable_x64(True):

        def loglik(gamma: float) -> float:
            m0 = latent["m_fam0"].copy()
            m0[:, 1] = gamma  # every tier's gamma (columns of m_fam: beta, gamma, delta)
            draws = {k: v[None] for k, v in {**latent, "m_fam0": m0}.items()}
            return float(log_likelihood(bayes.stratified_law, draws, fixed, design)["correct"].sum())

        assert loglik(-2.0) == pytest.approx(loglik(2.0), abs=1e-6)


def test_model_effects_and_exponents_do_touch_the_likelihood(data: bayes.FitData) -> None:
    """The converse of the test above, so that it can fail: a varying factor's exponent moves the likelihood."""
    import jax
    from numpyro.infer.util import log_likelihood

    design = bayes.Design.of(data)
    _, sites = bayes.simulate(data, seed=1)
    latent = infer.latent_sites(sites)
    with jax.enable_x64(True):

        def loglik(**change: np.ndarray) -> float:
            draws = {k: v[None] for k, v in {**latent, **change}.items()}
            return float(log_likelihood(bayes.stratified_law, draws, data, design)["correct"].sum())

        base = loglik()
        assert abs(loglik(v_model=latent["v_model"] + 0.3) - base) > 1.0
        m0 = latent["m_fam0"].copy()
        m0[:, 0] += 0.5  # beta
        assert abs(loglik(m_fam0=m0) - base) > 1.0


# --- inference -------------------------------------------------------------------------------------------------


def _inside(post: infer.Posterior, sites: dict[str, np.ndarray], level: float = 0.9, coefs=("ln_a", "alpha", "beta")):
    true = infer._to_law_scale(sites["theta_tier"], post.centre)
    iv = post.interval("tier", level)
    return np.array([((true[f] >= iv[f][1]) & (true[f] <= iv[f][2])).ravel() for f in coefs]).ravel()


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[bayes.FitData, dict[str, np.ndarray], infer.Posterior]:
    tiers = ("KA", "KR")
    d, sites = bayes.simulate(_small(seed=3, num_configs=50, tiers=tiers), seed=3, truth=_truth(list(tiers)))
    post = infer.run_nuts(d, num_warmup=200, num_samples=200, num_chains=1, seed=0)
    return d, sites, post


def test_nuts_recovers_the_tier_laws_it_simulated(nuts_fit) -> None:
    _, sites, post = nuts_fit
    assert post.method == "nuts" and post.num_draws == 200
    assert post.tier["alpha"].shape == (200, 2, 2)
    assert post.diagnostics.r_hat["tier"] < 1.1, post.diagnostics  # one short chain: loose; the gate is stricter
    assert post.diagnostics.divergences <= 10  # reported, and refused by diagnostics_ok; a short run has a few
    assert post.diagnostics.mean_steps < 127, post.diagnostics  # trees do not run into the depth cap
    inside = _inside(post, sites)
    assert inside.mean() >= 0.7, inside
    coef = post.coef("qwen3", tier="KR")
    assert coef.alpha.shape == (200,)


def test_posterior_predictive_interval_covers_the_observed_counts(nuts_fit) -> None:
    d, _, post = nuts_fit
    ppc = infer.posterior_predictive_check(post, d, level=0.9)
    assert 0.8 <= ppc.coverage <= 1.0
    assert set(ppc.by_tier) == {"KA", "KR"}
    assert np.all(ppc.lo <= ppc.hi)


def test_diagnostics_gate_refuses_a_short_run(nuts_fit) -> None:
    _, _, post = nuts_fit
    problems = post.diagnostics.problems(infer.Thresholds(ess_min=10_000))
    assert any("ESS" in p and "< 10000" in p for p in problems)
    assert not post.diagnostics_ok(infer.Thresholds(ess_min=10_000))


REPLICATES = 20


def test_90_percent_intervals_cover_the_truth_90_percent_of_the_time() -> None:
    """Simulation-based calibration: each replicate's parameters AND counts are drawn from the model's prior, then
    fitted by NUTS (one compilation for all replicates). Per replicate, 12 key coefficients (ln_a, alpha, beta of
    each family x tier law). Coverage events within a replicate are correlated, so the binomial tolerance is
    widened by a design effect of 2: the test passes with probability ~0.999 when intervals are calibrated and
    fails when they cover less than ~0.8 or (nearly) always."""
    from scipy.stats import binom

    tiers = ("KA", "KR")
    rows = _small(seed=11, num_configs=30, tiers=tiers)
    sims = [bayes.simulate(rows, seed=100 + r) for r in range(REPLICATES)]
    posts = infer.run_nuts_many(
        rows, [d.correct for d, _ in sims], num_warmup=150, num_samples=200, num_chains=1, seed=0
    )
    inside = np.concatenate([_inside(p, s) for p, (_, s) in zip(posts, sims, strict=True)])
    n, design_effect = inside.size, 2.0
    n_eff = n / design_effect
    lo, hi = binom.ppf(0.001, n_eff, 0.9) / n_eff, binom.ppf(0.999, n_eff, 0.9) / n_eff
    assert lo <= inside.mean() <= hi, (inside.mean(), lo, hi)
    assert hi < 1.0  # the test can fail for intervals that are too wide, not only too narrow


def test_svi_converges_and_says_so() -> None:
    d, sites = bayes.simulate(_small(seed=5, num_configs=80, tiers=("KA",)), seed=5, truth=_truth(["KA"]))
    post = infer.run_svi(d, seed=0)
    conv = post.diagnostics.svi
    assert conv is not None and conv.converged, conv
    assert post.diagnostics_ok()
    assert _inside(post, sites, level=0.98).mean() >= 0.6


def test_svi_cut_short_is_reported_unconverged(data: bayes.FitData) -> None:
    post = infer.run_svi(data, steps=60, lr=1e-3, seed=0)
    assert post.diagnostics.svi is not None and not post.diagnostics.svi.converged
    assert not post.diagnostics_ok()
