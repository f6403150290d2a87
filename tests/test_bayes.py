"""Specification of the Bayesian stratified law (fit.bayes) and its inference (fit.infer).

Recovery tests simulate counts from the model itself (fit.bayes.simulate) at known parameters and check the
posterior brackets them; bad-input tests check each refusal is one clear line.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numpyro")

from fit import bayes, infer

TRUE_MU = [  # tier population laws on the centred scale: c, alpha, beta, gamma, delta
    [0.0, -0.36, -1.07, -0.04, 0.07],
    [-0.3, -0.40, -1.07, -0.03, 0.07],
    [0.3, -0.36, -1.28, -0.03, 0.085],
]


def _truth(tiers: list[str]) -> dict[str, np.ndarray]:
    idx = [bayes.Priors().tier_names.index(t) for t in tiers]
    return {
        "mu_z": bayes.mu_z_for(np.asarray(TRUE_MU)[idx], tiers),
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


def test_a_factor_that_never_varies_does_not_touch_the_likelihood(data: bayes.FitData) -> None:
    import jax
    from numpyro.infer.util import log_density

    fixed = _with(data, calib_samples=np.full(len(data), 128.0))
    design = bayes.Design.of(fixed)
    assert design.constant.tolist() == [False, False, True, False]
    _, sites = bayes.simulate(fixed, seed=1)
    latent = {k: sites[k] for k in infer.LATENT_SITES if k in sites}
    with jax.enable_x64(True):

        def loglik(gamma_z: float) -> float:
            z = latent["mu_z"].copy()
            z[:, 3] = gamma_z  # every tier's gamma; the prior term on mu_z is removed below
            lp, _ = log_density(bayes.stratified_law, (fixed, design), {}, {**latent, "mu_z": z})
            return float(lp) + 0.5 * float((z**2).sum())

        assert loglik(-2.0) == pytest.approx(loglik(2.0), abs=1e-6)


# --- inference -------------------------------------------------------------------------------------------------


def _inside(post: infer.Posterior, sites: dict[str, np.ndarray], level: float = 0.9) -> np.ndarray:
    true = infer._to_law_scale(sites["theta_tier"], post.centre)
    iv = post.interval("tier", level)
    return np.array(
        [((true[f] >= iv[f][1]) & (true[f] <= iv[f][2])).ravel() for f in ("ln_a", "alpha", "beta")]
    ).ravel()


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[bayes.FitData, dict[str, np.ndarray], infer.Posterior]:
    d, sites = bayes.simulate(_small(seed=3, num_configs=50), seed=3, truth=_truth(["KM", "KA", "KR"]))
    post = infer.run_nuts(d, num_warmup=150, num_samples=200, num_chains=1, seed=0)
    return d, sites, post


def test_nuts_recovers_the_tier_laws_it_simulated(nuts_fit) -> None:
    _, sites, post = nuts_fit
    assert post.method == "nuts" and post.num_draws == 200
    assert post.tier["alpha"].shape == (200, 2, 3)
    assert post.diagnostics.r_hat["tier"] < 1.1, post.diagnostics  # one short chain: loose; the gate is stricter
    assert post.diagnostics.divergences <= 15  # reported, and refused by diagnostics_ok; a short run has a few
    inside = _inside(post, sites)
    assert inside.mean() >= 0.7, inside
    coef = post.coef("qwen3", tier="KR")
    assert coef.alpha.shape == (200,)


def test_posterior_predictive_interval_covers_the_observed_counts(nuts_fit) -> None:
    d, _, post = nuts_fit
    ppc = infer.posterior_predictive_check(post, d, level=0.9)
    assert 0.8 <= ppc.coverage <= 1.0
    assert set(ppc.by_tier) == {"KM", "KA", "KR"}
    assert np.all(ppc.lo <= ppc.hi)


def test_diagnostics_gate_refuses_a_short_run(nuts_fit) -> None:
    _, _, post = nuts_fit
    problems = post.diagnostics.problems(infer.Thresholds(ess_min=10_000))
    assert any("ESS" in p and "< 10000" in p for p in problems)
    assert not post.diagnostics_ok(infer.Thresholds(ess_min=10_000))


def test_svi_converges_on_a_simple_problem_and_says_so() -> None:
    d, sites = bayes.simulate(_small(seed=5, num_configs=80, tiers=("KA",)), seed=5, truth=_truth(["KA"]))
    post = infer.run_svi(d, steps=2000, lr=0.02, seed=0)
    conv = post.diagnostics.svi
    assert conv is not None and conv.converged, conv
    assert post.diagnostics_ok()
    assert _inside(post, sites, level=0.98).mean() >= 0.6


def test_svi_cut_short_is_reported_unconverged(data: bayes.FitData) -> None:
    post = infer.run_svi(data, steps=60, lr=1e-3, seed=0)
    assert post.diagnostics.svi is not None and not post.diagnostics.svi.converged
    assert not post.diagnostics_ok()
