"""Bayesian stratified laws: the paper's law with a likelihood on correct counts and partial pooling.

The model (``stratified_law``) is a plain NumPyro function; inference is configured outside (``fit.infer``).

Likelihood. Row i is one (model, configuration, task) measurement: ``correct_i`` of ``n_i`` items right.

    p_i = r_i + (1 - r_i) * Acc_adj_i,     Acc_adj_i = law.four_factor(coef_{f,k}, N, B, G, Cb)   (strata/law.py)
    correct_i ~ BetaBinomial(n_i, p_i * phi_t, (1 - p_i) * phi_t)

(log density by ``_BetaBinomial``, cheaper per gradient on CPU than numpyro's own; fit.infer runs in float64,
where lgamma of n ~ 18,000 keeps the likelihood's differences exact to well under 0.01 nats.)

Accuracies at or below chance or at 100% are ordinary counts here: nothing is clipped; p is only kept inside
(1e-6, 1 - 1e-6) so its logarithm stays finite. We chose the beta-binomial over the binomial because the items
of a task are the same for every configuration, so what varies between configurations is not item sampling
(binomial noise on 14,042 MMLU items is +-0.4 points) but how far each configuration sits from a smooth law
(a few points). phi_t, the concentration per tier, caps the weight of one accuracy at roughly phi_t items
whatever n is, and is learned; with n small the beta-binomial reduces to the binomial. An item-level model
(shared item difficulties) needs per-item results, which published tables do not have.

Model effects. A model size's deviation from the power law in N is shared by all its configurations, so the
linear predictor also carries u_{m,t} ~ Normal(0, omega_t) per (model, tier) pair, m a (family, N) model. Without
it, 300 configurations from 5 model sizes would pin alpha as if they were 300 independent sizes.

Hierarchy (the model's meaning), per law coefficient (c, alpha, beta, gamma, delta):

    mu_t            ~ Normal(prior mean_t, prior sd)             tier t's population law (families share it)
    theta_{f,t}     ~ Normal(mu_t, tau)                         family f's law for tier t
    theta_{f,k}     ~ Normal(theta_{f,t(k)}, sigma)             family f's law for task k of tier t(k)
    tau, sigma ~ HalfNormal(per coefficient); omega_t ~ Gamma(2, 20); ln phi_t ~ Normal

A level with one member is not sampled: with one family theta_{f,t} = mu_t (no tau), and a (family, tier) with one
task has theta_{f,k} = theta_{f,t} (no sigma); the spread of a single member is not identified.

Parameterisation (how NUTS sees it; the joint distribution above is unchanged). Sampled directly (mu, then
theta_tier, theta_task, u), the rows pin c + alpha x_N + u per (model, tier), leaving a ridge along (c, alpha, u)
and a funnel between omega and the per-family (c, alpha), where NUTS runs into its tree-depth cap. So:

- m_{f,t} = the mean of family f's task laws in tier t is sampled instead of theta_{f,t}; the task laws are m plus
  Helmert contrasts (site ``task_dev``, ~Normal(0, sigma) each), and theta_{f,t} is drawn from its conditional
  given m and mu (site ``z_theta``), which nothing downstream depends on.
- For c and alpha the rows see only v_{m,t} = c + alpha x_N of m + u_{m,t} (site ``v_model``, centred on the
  data). (mu, m) for c and alpha are Gaussian given v and the scales, so they are integrated out: v has a
  multivariate normal marginal, and (mu, m) are drawn from their conditional (site ``z_law``).
- For beta, gamma, delta, mu is integrated out by sampling the families in turn, each conditioned on those before
  (sites ``m_fam0``, ``m_fam1``, ...), then mu from its conditional (site ``z_mu``). Centred where the data pin
  the coefficient, non-centred otherwise (``centred_coefs``).

The features are centred (fit.data.Design): c is the intercept at the data's centre, reported as ln_a on the law's
own scale.

Priors (weakly informative; the paper's reported exponents enter only as prior centres, with sds several times
their spread across summaries): see ``Priors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fit.data import Design, FitData
from strata import law
from strata.law import TIERS

LawForm = Literal["four_factor", "baseline"]
Likelihood = Literal["beta_binomial", "binomial"]
LAW_FORMS: tuple[str, ...] = ("four_factor", "baseline")
LIKELIHOODS: tuple[str, ...] = ("beta_binomial", "binomial")
COEFS: tuple[str, ...] = ("c", "alpha", "beta", "gamma", "delta")  # c: centred intercept; ln_a reported instead
P_EPS = 1e-6


def law_coefs(law_form: str) -> tuple[str, ...]:
    """The coefficients a law form samples (the baseline law has no gamma, delta)."""
    if law_form not in LAW_FORMS:
        raise ValueError(f"unknown law form {law_form!r}; expected one of {', '.join(LAW_FORMS)}")
    return COEFS if law_form == "four_factor" else COEFS[:3]


@dataclass(frozen=True)
class Priors:
    """Weakly informative priors, per tier (KM, KA, KR) and coefficient (c, alpha, beta, gamma, delta).

    Centres (paper-secondary, unverified): general alpha -0.36, beta -1.07, gamma -0.03, delta 0.07; KM gamma
    -0.04; KA alpha -0.40; KR beta -1.2..-1.36 (-1.28 used), delta 0.085. The 3-bit general law (alpha -0.322,
    gamma -0.103, delta 0.117) sits well inside. Sds: alpha 0.3, beta 0.75, gamma 0.2, delta 0.15, i.e. the
    data decide wherever they vary the factor. c, ln(-ln Acc_adj) at the data's centre, gets Normal(-0.5, 1.5):
    Acc_adj anywhere from ~0.01 to ~0.99 at two sds. The paper's ln A (6.87 at 3 bits) is not used: it is tied
    to the scale of N and strongly correlated with alpha, so a prior on it would be a prior on alpha in disguise.

    Scales: tau (family spread around the tier law) and sigma (task spread around the family's tier law) are
    HalfNormal per coefficient; tasks differ mostly in difficulty, hence sigma_c = 1. omega (model-size
    deviation from the law, on the ln(-ln) scale) Gamma(2, rate 20): mode 0.05, mean 0.1, 95% below 0.24, and a
    density that vanishes at 0, because no family's models sit exactly on a power law in N, and because an omega
    near 0 is the neck of a funnel with the model effects, where NUTS diverges.
    ln phi (beta-binomial concentration, ~items one accuracy is worth) Normal(ln 300, 1.5): a residual sd of
    1-10 accuracy points.
    """

    mean: tuple[tuple[float, ...], ...] = (
        (-0.5, -0.36, -1.07, -0.04, 0.07),  # KM
        (-0.5, -0.40, -1.07, -0.03, 0.07),  # KA
        (-0.5, -0.36, -1.28, -0.03, 0.085),  # KR
    )
    sd: tuple[float, ...] = (1.5, 0.3, 0.75, 0.2, 0.15)
    tau: tuple[float, ...] = (0.5, 0.1, 0.3, 0.05, 0.05)
    sigma: tuple[float, ...] = (1.0, 0.1, 0.3, 0.05, 0.05)
    omega_shape: float = 2.0
    omega_rate: float = 20.0
    log_phi_mean: float = float(np.log(300.0))
    log_phi_sd: float = 1.5
    tier_names: tuple[str, ...] = TIERS

    def for_tiers(self, tiers: Sequence[str], d: int) -> tuple[np.ndarray, np.ndarray]:
        """Prior mean (T, d) and sd (d,) for the fitted tiers, in their order."""
        unknown = [t for t in tiers if t not in self.tier_names]
        if unknown:
            raise ValueError(f"no prior for tier {unknown[0]!r}; priors cover {', '.join(self.tier_names)}")
        mean = np.array([self.mean[self.tier_names.index(t)][:d] for t in tiers], dtype=float)
        return mean, np.array(self.sd[:d], dtype=float)


DEFAULT_PRIORS = Priors()


@dataclass(frozen=True)
class _LatentCA:
    """Constant structure of the Gaussian block (mu, m) of c and alpha, all tiers: g ~ Normal(g0, G), v = B g + u.

    Per tier t the block is [mu_c, mu_alpha, m_c (F), m_alpha (F)]. G's part from mu (prior sd^2, shared by mu
    and every m) is constant; the family spread tau^2 + w is added on the m diagonal (``diag_idx``, read from
    var_m (2, F, T) at ``diag_src``).
    """

    g0: np.ndarray  # (D,)
    g_const: np.ndarray  # (D, D)
    b: np.ndarray  # (P, D)
    diag_idx: np.ndarray  # (2 F T,)
    diag_src: tuple[np.ndarray, np.ndarray, np.ndarray]
    mu_idx: np.ndarray  # (T, 2)
    m_idx: np.ndarray  # (F, T, 2)

    @classmethod
    def of(cls, design: Design, n_fams: int, n_tiers: int, prior_mean: np.ndarray, prior_sd: np.ndarray) -> _LatentCA:
        block = 2 + 2 * n_fams
        size = block * n_tiers
        g0, g_const = np.zeros(size), np.zeros((size, size))
        mu_idx, m_idx = np.zeros((n_tiers, 2), int), np.zeros((n_fams, n_tiers, 2), int)
        diag_idx: list[int] = []
        src: tuple[list[int], list[int], list[int]] = ([], [], [])
        for t in range(n_tiers):
            for j in range(2):
                i_mu = t * block + j
                i_m = t * block + 2 + j * n_fams + np.arange(n_fams)
                mu_idx[t, j], m_idx[:, t, j] = i_mu, i_m
                idx = np.concatenate([[i_mu], i_m])
                g0[idx] = prior_mean[t, j]
                g_const[np.ix_(idx, idx)] = prior_sd[j] ** 2
                diag_idx += list(i_m)
                src[0].extend([j] * n_fams)
                src[1].extend(range(n_fams))
                src[2].extend([t] * n_fams)
        b = np.zeros((design.n_pairs, size))
        rows = np.arange(design.n_pairs)
        b[rows, m_idx[design.pair_family, design.pair_tier, 0]] = 1.0
        b[rows, m_idx[design.pair_family, design.pair_tier, 1]] = design.pair_x
        diag_src = (np.array(src[0]), np.array(src[1]), np.array(src[2]))
        return cls(g0, g_const, b, np.array(diag_idx), diag_src, mu_idx, m_idx)


def centred_coefs(data: FitData, design: Design, d: int) -> np.ndarray:
    """(d,) 1.0 where a coefficient's family and task levels are centred, 0.0 where non-centred.

    Centred: the intercept c always, and beta where every (family, task) group has two bit-widths (the data pin
    both per group). Non-centred: alpha (pinned per family only through a handful of model sizes), gamma and
    delta, whose small scales (tau, sigma ~ 0.02) make a funnel with a centred site: centring them too, where the
    simulated benchmark grid (bench/fit_speed.py) varies them, made NUTS diverge.
    """
    raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 2]  # ln log2 B
    group = design.ftask
    varies = all(np.ptp(raw[group == g]) > 0 for g in np.unique(group))
    return np.array([1.0, 0.0, float(varies), 0.0, 0.0])[:d]


def lgamma(x: Any) -> Any:
    """ln Gamma(x) for x > 0: Stirling's series at x + 6 after six recurrence steps.

    Within 4e-10 absolute (3e-12 relative) of jax's gammaln from 1e-7 to 1e5, gradient within 1e-11, and cheaper
    with its gradient on CPU in float64, where the beta-binomial's lgammas dominate a NUTS step.
    """
    import jax.numpy as jnp

    y = x + 6.0
    prod = x * (x + 1.0) * (x + 2.0) * (x + 3.0) * (x + 4.0) * (x + 5.0)
    r = 1.0 / y
    r2 = r * r
    series = r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (1.0 / 1680 - r2 / 1188))))
    return (y - 0.5) * jnp.log(y) - y + 0.5 * float(np.log(2 * np.pi)) + series - jnp.log(prod)


def _beta_binomial(a: Any, b: Any, n: Any) -> Any:
    """numpyro's BetaBinomial with its log density written with ``lgamma`` (same value to 1e-9, cheaper)."""
    import numpyro.distributions as dist

    class _BetaBinomial(dist.BetaBinomial):
        def log_prob(self, value: Any) -> Any:
            a, b, n = self.concentration1, self.concentration0, self.total_count
            return (
                lgamma(n + 1.0)
                - lgamma(value + 1.0)
                - lgamma(n - value + 1.0)
                + lgamma(value + a)
                + lgamma(n - value + b)
                - lgamma(n + a + b)
                + lgamma(a + b)
                - lgamma(a)
                - lgamma(b)
            )

    return _BetaBinomial(a, b, n)


def _sqrt(v: Any) -> Any:
    """sqrt with a finite gradient at 0 (a variance that is structurally 0 still gets a zero gradient)."""
    import jax.numpy as jnp

    return jnp.sqrt(jnp.maximum(v, 1e-30))


def family_sites(n_fams: int) -> tuple[str, ...]:
    """Names of the family-law sites (one per family: each is conditioned on the ones before it)."""
    return tuple(f"m_fam{f}" for f in range(n_fams))


def family_chain(prior_mean: Any, prior_sd: Any, tau: Any, w: Any, cen: Any, fixed: Any) -> tuple[Any, Any]:
    """Family laws m (F, T, c) for c columns, sampled in turn with the population mean mu integrated out, then
    mu (T, c) drawn from its conditional given them. Sites m_fam{f} (T, c) and z_mu (T, c); ``fixed`` (F, T, c)
    observes the family laws instead (simulation)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    n_fams, n_tiers, c = w.shape
    pm = jnp.asarray(prior_mean)
    pv = jnp.broadcast_to(jnp.asarray(prior_sd) ** 2, (n_tiers, c))
    ms = []
    for f, name in enumerate(family_sites(n_fams)):
        v = tau**2 + w[f]
        loc, scale = pm, _sqrt(pv + v)
        obs = None if fixed is None else (fixed[f] - loc * (1.0 - cen)) / scale ** (1.0 - cen)
        with numpyro.plate(f"fam{f}_coef", c, dim=-1), numpyro.plate(f"fam{f}_tiers", n_tiers, dim=-2):
            raw = numpyro.sample(name, dist.Normal(loc * cen, scale**cen), obs=obs)
        m_f = raw * scale ** (1.0 - cen) + loc * (1.0 - cen)
        k = pv / (pv + v)
        pm, pv = pm + k * (m_f - pm), pv * (1.0 - k)
        ms.append(m_f)
    with numpyro.plate("coef_mu", c, dim=-1), numpyro.plate("tiers_mu", n_tiers, dim=-2):
        z_mu = numpyro.sample("z_mu", dist.Normal(0.0, 1.0))
    return jnp.stack(ms), pm + _sqrt(pv) * z_mu


def stratified_law(
    data: FitData,
    design: Design | None = None,
    *,
    law_form: str = "four_factor",
    likelihood: str = "beta_binomial",
    priors: Priors = DEFAULT_PRIORS,
    correct: Any = None,
) -> None:
    """NumPyro model: the stratified law with partial pooling (population -> family -> task) on correct counts.

    ``correct`` (R,) are the counts the model is conditioned on (``data.correct`` to fit it; a traced argument, so
    one compilation serves many data sets of one shape); None draws them (prior or posterior predictive). Sites
    reported by fit.infer: ``mu`` (T, d) tier population laws, ``theta_tier`` (F, T, d) and ``theta_task`` (F, K,
    d) on the centred scale (column 0 is c). Pass ``design`` to skip rebuilding it at every trace.
    """
    s = Structure.of(data, design, law_form, likelihood, priors)
    tau, sigma, omega, log_phi, w = scale_sites(s)
    m, mu, v_model = family_law_sites(s, tau, w, omega)
    count_sites(s, m, mu, v_model, tau, sigma, w, log_phi, correct)


@dataclass(frozen=True)
class Structure:
    """What every trace of the model needs besides its random variables: data, design, priors, sizes."""

    data: FitData
    design: Design
    likelihood: str
    priors: Priors
    d: int  # coefficients sampled (law_coefs)
    n_tiers: int
    n_fams: int
    prior_mean: np.ndarray  # (T, d)
    prior_sd: np.ndarray  # (d,)
    centred: np.ndarray  # (d,) centred_coefs

    @classmethod
    def of(cls, data: FitData, design: Design | None, law_form: str, likelihood: str, priors: Priors) -> Structure:
        d = len(law_coefs(law_form))
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)}")
        design = design if design is not None else Design.of(data)
        prior_mean, prior_sd = priors.for_tiers(data.tier_names, d)
        n_tiers, n_fams = len(data.tier_names), len(data.family_names)
        cen = centred_coefs(data, design, d)
        return cls(data, design, likelihood, priors, d, n_tiers, n_fams, prior_mean, prior_sd, cen)


def scale_sites(s: Structure) -> tuple[Any, Any, Any, Any, Any]:
    """tau, sigma (d,), omega, log_phi (T,), and w (F, T, d): the variance of a family's mean task law about its
    tier law."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    d, design, priors = s.d, s.design, s.priors
    # A level with one member everywhere is not sampled: tau needs two families, sigma a (family, tier) with two
    # tasks (or a task some family lacks, whose law is then a prior draw around the family's tier law).
    zeros = jnp.zeros(d)
    with numpyro.plate("coef", d, dim=-1):
        tau = numpyro.sample("tau", dist.HalfNormal(jnp.asarray(priors.tau[:d]))) if s.n_fams > 1 else zeros
        use_sigma = design.helmert.shape[1] > 0 or len(design.unobserved) > 0
        sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.asarray(priors.sigma[:d]))) if use_sigma else zeros
    with numpyro.plate("tiers_1", s.n_tiers):
        omega = numpyro.sample("omega", dist.Gamma(priors.omega_shape, priors.omega_rate))
        log_phi = numpyro.sample("log_phi", dist.Normal(priors.log_phi_mean, priors.log_phi_sd))

    # m_{f,t}: family f's mean task law in tier t (the tier law theta_{f,t} plus the mean of its tasks'
    # deviations). Given mu_t it is Normal(mu_t, tau^2 + w_{f,t}), w = sigma^2 / K for K >= 2 tasks (0 for one
    # task: that task's law is the tier law).
    k_ft = jnp.asarray(design.n_tasks_ft, dtype=float)[..., None]  # (F, T, 1)
    w = jnp.where(k_ft >= 2, sigma**2 / jnp.maximum(k_ft, 1.0), 0.0)  # (F, T, d)
    return tau, sigma, omega, log_phi, w


def family_law_sites(s: Structure, tau: Any, w: Any, omega: Any) -> tuple[Any, Any, Any]:
    """The family laws m (F, T, d), population laws mu (T, d) and model effects v_model (pairs,).

    (1) c and alpha enter the likelihood only through the model effects, v_{m,t} = c + alpha x_N of the family's
    mean task law + u_{m,t}, u ~ Normal(0, omega_t); v is what the rows pin. Given the scales, (mu, m) for c and
    alpha and v are jointly Gaussian, so (mu, m) are integrated out: v is sampled from its marginal Normal, and
    (mu, m) drawn afterwards from their conditional given v (standard-normal site ``z_law``). This removes the
    funnel between omega and the per-family (c, alpha).
    (2) The exponents of B, Cb, G (columns 2..) enter the rows non-linearly: their family laws are sampled in turn,
    each conditioned on those before it (mu integrated out by a Kalman update of its Normal), then mu_t from its
    conditional given all of them; centred where the data pin the coefficient (``centred_coefs``).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from jax.scipy.linalg import cho_solve

    design = s.design
    lat = _LatentCA.of(design, s.n_fams, s.n_tiers, s.prior_mean, s.prior_sd)
    var_m = jnp.stack([tau[0] ** 2 + w[:, :, 0], tau[1] ** 2 + w[:, :, 1]])  # (2, F, T)
    g_cov = jnp.asarray(lat.g_const).at[lat.diag_idx, lat.diag_idx].add(var_m[lat.diag_src])
    b = jnp.asarray(lat.b)
    s_cov = b @ g_cov @ b.T + jnp.diag(omega[jnp.asarray(design.pair_tier)] ** 2)
    s_chol = jnp.linalg.cholesky(s_cov)
    v_loc = jnp.asarray(lat.b @ lat.g0)
    v_model = numpyro.sample("v_model", dist.MultivariateNormal(v_loc, scale_tril=s_chol))
    gain = cho_solve((s_chol, True), b @ g_cov).T  # (D, P): G B^T S^-1
    g_mean = jnp.asarray(lat.g0) + gain @ (v_model - v_loc)
    g_cond = g_cov - gain @ b @ g_cov
    g_cond = 0.5 * (g_cond + g_cond.T) + 1e-10 * jnp.eye(lat.g0.size)
    z_law = numpyro.sample("z_law", dist.Normal(jnp.zeros(lat.g0.size), 1.0).to_event(1))
    g = g_mean + jnp.linalg.cholesky(g_cond) @ z_law
    cen = jnp.asarray(s.centred)
    m_rest, mu_rest = family_chain(s.prior_mean[:, 2:], s.prior_sd[2:], tau[2:], w[..., 2:], cen[2:], None)
    mu = jnp.concatenate([g[jnp.asarray(lat.mu_idx)], mu_rest], axis=-1)
    m = jnp.concatenate([g[jnp.asarray(lat.m_idx)], m_rest], axis=-1)  # (F, T, d)
    return m, mu, v_model


def count_sites(
    s: Structure, m: Any, mu: Any, v_model: Any, tau: Any, sigma: Any, w: Any, log_phi: Any, correct: Any
) -> None:
    """Given the family and population laws: the tier and task laws, and the counts of the rows."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    data, design, d, n_fams = s.data, s.design, s.d, s.n_fams
    mu = numpyro.deterministic("mu", mu)

    # theta_{f,t} | m_{f,t}, mu_t: prior Normal(mu, tau^2), and m | theta ~ Normal(theta, w). Reported only.
    den = tau**2 + w
    safe = jnp.where(den > 0, den, 1.0)
    frac = jnp.where(den > 0, tau**2 / safe, 1.0)
    with (
        numpyro.plate("coef_t", d, dim=-1),
        numpyro.plate("tiers_t", s.n_tiers, dim=-2),
        numpyro.plate("families_t", n_fams, dim=-3),
    ):
        z_theta = numpyro.sample("z_theta", dist.Normal(0.0, 1.0))
    theta_tier = numpyro.deterministic("theta_tier", mu + frac * (m - mu) + _sqrt(tau**2 * w / safe) * z_theta)

    # Task laws: the family's mean task law plus the within-(family, tier) contrasts (Helmert): task deviations
    # ~ Normal(0, sigma) about the tier law, their mean absorbed into m. Centred for c only (tasks differ mostly
    # in difficulty, which every row pins); the exponents' task deviations are non-centred: with two bit-widths
    # per family a centred beta contrast makes a funnel with sigma_beta on the published data.
    n_contrasts = design.helmert.shape[1]
    cen_task = jnp.asarray(np.eye(d)[0])
    dev = jnp.zeros((len(design.ftask_family), d))
    if n_contrasts:
        with numpyro.plate("coef_k", d, dim=-1), numpyro.plate("contrasts", n_contrasts, dim=-2):
            raw = numpyro.sample("task_dev", dist.Normal(0.0, sigma**cen_task))
        dev = jnp.asarray(design.helmert) @ (raw * sigma ** (1.0 - cen_task))
    fam_p, tier_p = jnp.asarray(design.ftask_family), jnp.asarray(design.ftask_tier)
    theta_ft = m[fam_p, tier_p] + dev  # (P, d)
    theta_task = jnp.zeros((n_fams, len(data.task_names), d)).at[fam_p, jnp.asarray(design.ftask_task)].set(theta_ft)
    if len(design.unobserved):
        uf, uk = design.unobserved[:, 0], design.unobserved[:, 1]
        with numpyro.plate("coef_u", d, dim=-1), numpyro.plate("unobserved", len(uf), dim=-2):
            z_new = numpyro.sample("z_task_new", dist.Normal(0.0, 1.0))
        new = theta_tier[jnp.asarray(uf), jnp.asarray(data.task_tier[uk])] + sigma * z_new
        theta_task = theta_task.at[jnp.asarray(uf), jnp.asarray(uk)].set(new)
    numpyro.deterministic("theta_task", theta_task)

    # The rows: ln(-ln Acc_adj) = eta, the law of strata/law.py on centred features, with the (model, tier) level
    # v in place of c + alpha x_N (the conditional draws of c and alpha above never enter the likelihood).
    fam, tier = jnp.asarray(data.family, dtype=jnp.int32), jnp.asarray(data.tier, dtype=jnp.int32)
    x = jnp.asarray(design.x[:, : d - 1])  # (R, d-1) centred features the law uses
    row_dev = dev[jnp.asarray(design.ftask)]  # (R, d)
    slopes = m[fam, tier, 2:] + row_dev[:, 2:]
    eta = (
        v_model[jnp.asarray(design.model)] + row_dev[:, 0] + row_dev[:, 1] * x[:, 0] + (slopes * x[:, 1:]).sum(axis=-1)
    )
    acc_adj = jnp.exp(-jnp.exp(eta))
    p = jnp.clip(law.denormalize(acc_adj, jnp.asarray(data.chance), xp=jnp), P_EPS, 1.0 - P_EPS)
    n = jnp.asarray(np.asarray(data.n, dtype=int))
    with numpyro.plate("rows", len(data)):
        if s.likelihood == "beta_binomial":
            phi = jnp.exp(log_phi)[tier]
            numpyro.sample("correct", _beta_binomial(p * phi, (1.0 - p) * phi, n), obs=correct)
        else:
            numpyro.sample("correct", dist.Binomial(n, probs=p), obs=correct)
