"""Specification of the Bayesian stratified law (fit.bayes), its data checks (fit.data) and inference (fit.infer).

Recovery tests simulate counts from the model itself (fit.synthetic.simulate) at known parameters and check the
posterior brackets them; the calibration test draws whole data sets from the prior and checks the 90% intervals
cover the truth 90% of the time; bad-input tests check each refusal is one clear line.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numpyro")

from fit import bayes, infer, synthetic
from fit.data import Design, FitData
from strata.profile import NutsSettings, SviSettings

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


def _small(seed: int = 0, num_configs: int = 60, tiers: tuple[str, ...] = ("KM", "KA", "KR")) -> FitData:
    return synthetic.synthetic_rows(num_configs, tasks_per_tier=1, tiers=tiers, seed=seed)


# --- bad input ---------------------------------------------------------------------------------------------------


def _with(data: FitData, **changes: object) -> FitData:
    return FitData(**{**data.__dict__, **changes})


TIERS = ("KA", "KR")
REPLICATES = 10  # simulation-based calibration replicates; 10 x 12 coverage events (see the test)


@pytest.fixture(scope="module")
def rows() -> FitData:
    """60 rows (30 configurations x 2 tiers x 1 task, two families): every fit below shares one compilation."""
    return _small(seed=11, num_configs=30, tiers=TIERS)


@pytest.fixture(scope="module")
def truth_fit(rows: FitData) -> tuple[FitData, dict[str, np.ndarray]]:
    return synthetic.simulate(rows, seed=3, truth=_truth(list(TIERS)))


@pytest.fixture(scope="module")
def data(truth_fit) -> FitData:
    return truth_fit[0]


@pytest.fixture(scope="module")
def prior_draws(rows: FitData) -> dict[str, np.ndarray]:
    """REPLICATES draws of every site, parameters and counts, from the model's prior (one compiled trace)."""
    import functools

    import jax
    from numpyro.infer import Predictive

    model = functools.partial(bayes.stratified_law, rows, Design.of(rows))  # no counts: drawn from the prior
    with jax.enable_x64(True):
        draws = jax.jit(lambda key: Predictive(model, num_samples=REPLICATES)(key))(jax.random.PRNGKey(7))
    return {k: np.asarray(v) for k, v in draws.items()}


@pytest.fixture(scope="module")
def fits(rows, truth_fit, prior_draws) -> list[infer.Posterior]:
    """NUTS on the fixed-truth data set and on every prior replicate: one compilation, 1 + REPLICATES fits."""
    counts = [truth_fit[0].correct] + [c.astype(int) for c in prior_draws["correct"]]
    short = NutsSettings(warmup=100, samples=150, chains=1, target_accept=0.9, max_tree_depth=6)
    return infer.run_nuts_many(rows, counts, short)


def test_valid_data_reports_constant_factors_as_prior_only(data: FitData) -> None:
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
def test_bad_input_is_one_clear_error(data: FitData, change, message: str) -> None:
    bad = _with(data, **change(data))
    with pytest.raises(ValueError, match=message) as err:
        bad.validate()
    assert "\n" not in str(err.value)


def test_two_models_of_one_size_in_a_family_keep_their_own_effects(data: FitData) -> None:
    """LLaMA-1 13B and Llama-2 13B share a family and N but not their deviation from the law."""
    by_size = Design.of(data)
    half = (np.arange(len(data)) // len(data.task_names)) % 2  # alternate configurations (rows: config x task)
    names = [f"{fam}-{p:g}-{h}" for fam, p, h in zip(data.family, data.params, half, strict=True)]
    named = FitData.from_records(
        **{k: getattr(data, k) for k in ("params", "bits", "group_size", "calib_samples", "correct", "n", "chance")},
        task=[data.task_names[k] for k in data.task],
        tier=[data.tier_names[t] for t in data.tier],
        family=[data.family_names[f] for f in data.family],
        model=names,
    )
    assert named.validate() == []
    split = Design.of(named)
    assert split.n_models == 2 * by_size.n_models and split.n_pairs == 2 * by_size.n_pairs
    two_sizes = _with(named, model=np.zeros(len(data), dtype=int))
    with pytest.raises(ValueError, match="different parameter counts"):
        two_sizes.validate()


def test_single_model_size_fallback_keeps_alpha_at_its_prior(data: FitData) -> None:
    one = _with(data, params=np.full(len(data), 8e9))
    assert "alpha is its prior" in one.validate(allow_single_size=True)[0]


def test_fitting_a_tier_without_rows_or_an_unknown_law_is_refused(data: FitData) -> None:
    with pytest.raises(ValueError, match="tier KX has no rows"):
        infer.run_svi(_with(data, tier_names=[*data.tier_names, "KX"]), SviSettings(steps=20))
    with pytest.raises(ValueError, match="unknown law form 'cubic'"):
        infer.run_svi(data, SviSettings(steps=20), law_form="cubic")
    with pytest.raises(ValueError, match="'beta_binomial' or 'binomial'"):  # settings refuse it before any fit
        SviSettings(steps=20, likelihood="poisson")
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):  # and so does the model itself
        bayes.stratified_law(data, likelihood="poisson")


def test_fast_lgamma_matches_jax() -> None:
    import jax
    from jax.scipy.special import gammaln

    x = np.logspace(-7, 5, 2000)
    with jax.enable_x64(True):  # as fit.infer runs
        assert np.max(np.abs(np.asarray(bayes.lgamma(x)) - np.asarray(gammaln(x)))) < 1e-9


def test_a_factor_that_never_varies_does_not_touch_the_likelihood(data: FitData, prior_draws) -> None:
    import jax
    from numpyro.infer.util import log_likelihood

    fixed = _with(data, calib_samples=np.full(len(data), 128.0))
    design = Design.of(fixed)
    assert design.constant.tolist() == [False, False, True, False]
    latent = {k: v[0] for k, v in infer.latent_sites(prior_draws).items()}
    with jax.enable_x64(True):

        def loglik(gamma: float) -> float:
            m0 = latent["m_fam0"].copy()
            m0[:, 1] = gamma  # every tier's gamma (columns of m_fam: beta, gamma, delta)
            draws = {k: v[None] for k, v in {**latent, "m_fam0": m0}.items()}
            return float(
                log_likelihood(bayes.stratified_law, draws, fixed, design, correct=fixed.correct)["correct"].sum()
            )

        assert loglik(-2.0) == pytest.approx(loglik(2.0), abs=1e-6)


def test_model_effects_and_exponents_do_touch_the_likelihood(data: FitData, prior_draws) -> None:
    """The converse of the test above, so that it can fail: a varying factor's exponent moves the likelihood."""
    import jax
    from numpyro.infer.util import log_likelihood

    design = Design.of(data)
    latent = {k: v[0] for k, v in infer.latent_sites(prior_draws).items()}
    with jax.enable_x64(True):

        def loglik(**change: np.ndarray) -> float:
            draws = {k: v[None] for k, v in {**latent, **change}.items()}
            return float(
                log_likelihood(bayes.stratified_law, draws, data, design, correct=data.correct)["correct"].sum()
            )

        base = loglik()
        assert abs(loglik(v_model=latent["v_model"] + 0.3) - base) > 1.0
        m0 = latent["m_fam0"].copy()
        m0[:, 0] += 0.5  # beta
        assert abs(loglik(m_fam0=m0) - base) > 1.0


# --- inference -------------------------------------------------------------------------------------------------


def _inside(post: infer.Posterior, sites: dict[str, np.ndarray], level: float = 0.9, coefs=("ln_a", "alpha", "beta")):
    true = infer._to_law_scale(sites["theta_tier"], post.family_centre[:, None, :])
    iv = post.interval("tier", level)
    return np.array([((true[f] >= iv[f][1]) & (true[f] <= iv[f][2])).ravel() for f in coefs]).ravel()


@pytest.fixture(scope="module")
def nuts_fit(truth_fit, fits) -> tuple[FitData, dict[str, np.ndarray], infer.Posterior]:
    return truth_fit[0], truth_fit[1], fits[0]


def test_nuts_recovers_the_tier_laws_it_simulated(nuts_fit) -> None:
    _, sites, post = nuts_fit
    assert post.method == "nuts" and post.num_draws == 150
    assert post.tier["alpha"].shape == (150, 2, 2)  # (draws, families, tiers)
    assert post.diagnostics.r_hat["tier"] < 1.1, post.diagnostics  # one short chain: loose; the gate is stricter
    assert post.diagnostics.divergences <= 10  # reported, and refused by diagnostics_ok; a short run has a few
    assert post.diagnostics.mean_steps < 63, post.diagnostics  # trees do not all run into the depth cap (6)
    inside = _inside(post, sites)
    assert inside.mean() >= 0.7, inside
    coef = post.coef("qwen3", tier="KR")
    assert coef.alpha.shape == (150,)


def test_a_new_family_is_predicted_wider_than_a_fitted_one(nuts_fit) -> None:
    """A family the fit has not seen gets the population law plus a family deviation drawn with tau."""
    _, _, post = nuts_fit
    fitted, new = post.coef("qwen3", tier="KA"), post.new_family("KA", seed=0)
    assert new.alpha.shape == fitted.alpha.shape
    for f in ("ln_a", "alpha", "beta"):
        assert np.std(getattr(new, f)) > np.std(getattr(fitted, f))
    one = infer.Posterior(**{**post.__dict__, "family_names": ["qwen3"]})  # one family: tau from its prior
    assert np.std(one.new_family("KA", seed=0).alpha) > np.std(fitted.alpha)


def test_a_new_familys_task_keeps_the_offset_the_fitted_families_share(nuts_fit) -> None:
    """A new family's task law is its tier's new-family law moved by the task's offset, as the fitted families
    measured it, with the spread between families' offsets: not the tier law +- sigma (which forgets that an easy
    task is easy for every family). Built on the fit's own draws: two KA tasks, 'hard' 0.9 and 1.1 above 'easy'
    on ln A in the two families (slopes equal), and one KR task."""
    _, _, post = nuts_fit
    s = post.num_draws
    task = {f: np.repeat(post.task[f][:, :, :1], 3, axis=2).copy() for f in post.task}
    task["ln_a"][:, :, 1] += np.array([0.9, 1.1])
    p = infer.Posterior(**{**post.__dict__, "task_names": ["easy", "hard", "kr"], "task_tier": np.array([0, 0, 1]),
                           "task": task, "task_observed": np.ones((2, 3), bool)})  # fmt: skip
    easy, hard = p.new_family_task("easy", seed=0), p.new_family_task("hard", seed=0)
    diff = hard.ln_a - easy.ln_a
    assert diff.shape == (s,)
    assert 0.85 < np.median(diff) < 1.15  # the shared offset, 1.0
    # the offsets differ between families by +-0.05 about their mean: the spread is that, not sigma's
    assert np.std(diff) < 0.2, np.std(diff)
    assert np.std(p.new_family_task("easy", seed=0).beta) > np.std(post.coef("qwen3", tier="KA").beta)
    # a tier of one task: its new-family law is the tier's
    kr, tier = p.new_family_task("kr", seed=0), p.new_family("KR", seed=0)
    assert np.allclose(kr.ln_a, tier.ln_a) and np.allclose(kr.beta, tier.beta)


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


def test_90_percent_intervals_cover_the_truth_90_percent_of_the_time(prior_draws, fits) -> None:
    """Simulation-based calibration: each replicate's parameters AND counts are drawn from the model's prior, then
    fitted by NUTS. Per replicate, 12 key coefficients (ln_a, alpha, beta of each family x tier law). Coverage
    events within a replicate are correlated, so the binomial tolerance is widened by a design effect of 2: the
    test passes with probability ~0.99 when intervals are calibrated and fails when they cover less than ~0.78
    of the truths, or all of them (10 replicates: 120 events, effective 60, band [0.783, 0.983])."""
    from scipy.stats import binom

    sites = [{"theta_tier": prior_draws["theta_tier"][r]} for r in range(REPLICATES)]
    inside = np.concatenate([_inside(p, s) for p, s in zip(fits[1:], sites, strict=True)])
    n_eff = inside.size / 2.0
    lo, hi = binom.ppf(0.005, n_eff, 0.9) / n_eff, binom.ppf(0.995, n_eff, 0.9) / n_eff
    assert lo <= inside.mean() <= hi, (inside.mean(), lo, hi)
    assert hi < 1.0  # the test can fail for intervals that are too wide, not only too narrow


def test_svi_converges_and_says_so(truth_fit) -> None:
    d, sites = truth_fit
    post = infer.run_svi(d, SviSettings(steps=3000))
    conv = post.diagnostics.svi
    assert conv is not None and conv.converged, conv
    assert post.diagnostics_ok()
    assert _inside(post, sites, level=0.98).mean() >= 0.6


def test_svi_cut_short_is_reported_unconverged(data: FitData) -> None:
    post = infer.run_svi(data, SviSettings(steps=40, lr=1e-3))
    assert post.diagnostics.svi is not None and not post.diagnostics.svi.converged
    assert not post.diagnostics_ok()
