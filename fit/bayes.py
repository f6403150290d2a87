"""Bayesian stratified laws: the paper's law with a likelihood on correct counts and partial pooling.

The model (``stratified_law``) is a plain NumPyro function; inference is configured outside (``fit.infer``).

Likelihood. Row i is one (model, configuration, task) measurement: ``correct_i`` of ``n_i`` items right.

    p_i = r_i + (1 - r_i) * Acc_adj_i,     Acc_adj_i = law.four_factor(coef_{f,k}, N, B, G, Cb)   (fit/law.py)
    correct_i ~ BetaBinomial(n_i, p_i * phi_t, (1 - p_i) * phi_t)

(log density by ``_BetaBinomial``: numpyro's own costs 10x more per gradient on CPU; fit.infer runs in
float64, where lgamma of n ~ 18,000 keeps the likelihood's differences exact to well under 0.01 nats.)

Accuracies at or below chance or at 100% are ordinary counts here: nothing is clipped; p is only kept inside
(1e-6, 1 - 1e-6) so its logarithm stays finite. We chose the beta-binomial over the binomial because the items
of a task are the same for every configuration, so what varies between configurations is not item sampling
(binomial noise on 14,042 MMLU items is +-0.4 points) but how far each configuration sits from a smooth law
(a few points). phi_t, the concentration per tier, caps the weight of one accuracy at roughly phi_t items
whatever n is, and is learned; with n small the beta-binomial reduces to the binomial. An item-level model
(shared item difficulties) needs per-item results, which published tables do not have.

Model effects. A model size's deviation from the power law in N is shared by all its configurations, so the
linear predictor also carries u_{m,t} ~ Normal(0, omega_t) per (model, tier) pair, m a (family, N) model. Without
it, 300 configurations from 5 model sizes would pin alpha as if they were 300 independent sizes. (Per (model,
task) effects would be finer but doubled the parameter count and made NUTS mix poorly in our measurements.)

Hierarchy, per law coefficient (c, alpha, beta, gamma, delta):

    mu_t            = prior mean_t + prior sd_t * mu_z_t        tier t's population law (families share it)
    theta_{f,t}     ~ Normal(mu_t, tau)                         family f's law for tier t
    theta_{f,k}     ~ Normal(theta_{f,t(k)}, sigma)             family f's law for task k of tier t(k)
    mu_z ~ Normal(0, 1); tau, sigma ~ HalfNormal(per coefficient); omega_t ~ HalfNormal; ln phi_t ~ Normal

A level with one member is not sampled: with one family theta_{f,t} = mu_t, and a tier with one task has
theta_{f,k} = theta_{f,t}; the spread of a single member is not identified, and sampling it only adds a ridge
for NUTS to crawl along. Each kept level is centred (site value theta) for the coefficients the data pin in
every group and non-centred (site value (theta - loc) / scale) for the others (``centred_coefs``); the sites
are ``z_tier`` and ``z_task`` either way. The model effects u_{m,t} (site ``z_model``) are centred.

c is the intercept at the data's centre: the features [ln N, ln log2 B, ln log2 Cb, ln G] are centred on their
mean (``Design``), which removes the intercept-slope correlation that makes NUTS crawl; the reported
ln_a = c - sum_j coef_j * centre_j is on the law's own scale (fit/law.py LawCoef). A factor that never varies
is centred on its one value, so its exponent cancels from the likelihood and its posterior is its prior (and
ln_a carries that uncertainty away from the observed value): the honest answer for Cb and G in published
tables, which never vary them.

Priors (weakly informative; the paper's reported exponents enter only as prior centres, with sds several times
their spread across summaries): see ``Priors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from calibrate.tiermap import TIERS
from fit import law

LawForm = Literal["four_factor", "baseline"]
Likelihood = Literal["beta_binomial", "binomial"]
LAW_FORMS: tuple[str, ...] = ("four_factor", "baseline")
LIKELIHOODS: tuple[str, ...] = ("beta_binomial", "binomial")
COEFS: tuple[str, ...] = ("c", "alpha", "beta", "gamma", "delta")  # c: centred intercept; ln_a reported instead
FACTORS: tuple[str, ...] = ("params", "bits", "calib_samples", "group_size")  # order of the design's columns
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
    deviation from the law, on the ln(-ln) scale) HalfNormal(0.3); ln phi (beta-binomial concentration, ~items
    one accuracy is worth) Normal(ln 300, 1.5): a residual sd of 1-10 accuracy points.
    """

    mean: tuple[tuple[float, ...], ...] = (
        (-0.5, -0.36, -1.07, -0.04, 0.07),  # KM
        (-0.5, -0.40, -1.07, -0.03, 0.07),  # KA
        (-0.5, -0.36, -1.28, -0.03, 0.085),  # KR
    )
    sd: tuple[float, ...] = (1.5, 0.3, 0.75, 0.2, 0.15)
    tau: tuple[float, ...] = (0.5, 0.1, 0.3, 0.05, 0.05)
    sigma: tuple[float, ...] = (1.0, 0.1, 0.3, 0.05, 0.05)
    omega: float = 0.3
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


@dataclass
class FitData:
    """Counts per (model, configuration, task) row, as numpy arrays, with index arrays into the name lists.

    group_size is the effective group size (> 0): resolve per-channel first with law.effective_group_size.
    tier is per row (index into tier_names, by default 0=KM, 1=KA, 2=KR) and must agree with the task's tier.
    """

    params: np.ndarray
    bits: np.ndarray
    group_size: np.ndarray
    calib_samples: np.ndarray
    correct: np.ndarray
    n: np.ndarray
    chance: np.ndarray
    task: np.ndarray
    tier: np.ndarray
    family: np.ndarray
    task_names: list[str]
    family_names: list[str]
    tier_names: list[str] = field(default_factory=lambda: list(TIERS))

    @classmethod
    def from_records(
        cls,
        *,
        params: Any,
        bits: Any,
        group_size: Any,
        calib_samples: Any,
        correct: Any,
        n: Any,
        chance: Any,
        task: Sequence[str],
        tier: Sequence[str],
        family: Sequence[str],
        tiers: Sequence[str] | None = None,
    ) -> FitData:
        """Build from per-row labels; tiers defaults to those present, in KM, KA, KR order."""
        tier_names = list(tiers) if tiers is not None else [t for t in TIERS if t in set(tier)]
        unknown = sorted(set(tier) - set(tier_names))
        if unknown:
            raise ValueError(f"rows have tier {unknown[0]!r}, not among the fitted tiers {tier_names}")
        task_names = sorted(set(task))
        family_names = sorted(set(family))
        return cls(
            params=np.asarray(params, dtype=float),
            bits=np.asarray(bits, dtype=float),
            group_size=np.asarray(group_size, dtype=float),
            calib_samples=np.asarray(calib_samples, dtype=float),
            correct=np.asarray(correct),
            n=np.asarray(n),
            chance=np.asarray(chance, dtype=float),
            task=np.array([task_names.index(k) for k in task], dtype=int),
            tier=np.array([tier_names.index(t) for t in tier], dtype=int),
            family=np.array([family_names.index(f) for f in family], dtype=int),
            task_names=task_names,
            family_names=family_names,
            tier_names=tier_names,
        )

    def __len__(self) -> int:
        return int(np.asarray(self.params).shape[0])

    @property
    def task_tier(self) -> np.ndarray:
        """Tier index of each task (validate() checks each task has exactly one)."""
        out = np.zeros(len(self.task_names), dtype=int)
        out[np.asarray(self.task, dtype=int)] = np.asarray(self.tier, dtype=int)
        return out

    def validate(self, *, allow_single_size: bool = False) -> list[str]:
        """Raise ValueError (one line) on unusable data; return identifiability warnings.

        A single model size leaves alpha unidentified: an error unless ``allow_single_size``, in which case
        the documented fallback applies (alpha's posterior is its prior, through the centred design) and a
        warning is returned. Any other factor that never varies (typically Cb and G in published tables) is a
        warning only: its exponent is its prior. Every fitted tier and task must have rows.
        """
        r = len(self)
        if r == 0:
            raise ValueError("no rows to fit")
        arrays = {
            "params": self.params,
            "bits": self.bits,
            "group_size": self.group_size,
            "calib_samples": self.calib_samples,
            "correct": self.correct,
            "n": self.n,
            "chance": self.chance,
            "task": self.task,
            "tier": self.tier,
            "family": self.family,
        }
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.shape != (r,):
                raise ValueError(f"{name} has shape {a.shape}; every column must have shape ({r},)")
            if a.dtype.kind not in "biuf":
                raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} has non-finite values (row {int(np.flatnonzero(~np.isfinite(a))[0])})")
        for name in ("correct", "n", "task", "tier", "family"):
            a = np.asarray(arrays[name])
            if np.any(a != np.round(a)):
                raise ValueError(f"{name} must hold integers")
        correct, n = np.asarray(self.correct), np.asarray(self.n)
        if np.any(correct < 0):
            raise ValueError(f"negative correct count in row {int(np.flatnonzero(correct < 0)[0])}")
        if np.any(n <= 0):
            raise ValueError(f"item count n must be positive (row {int(np.flatnonzero(n <= 0)[0])})")
        if np.any(correct > n):
            i = int(np.flatnonzero(correct > n)[0])
            raise ValueError(f"correct count {correct[i]:g} exceeds n = {n[i]:g} items in row {i}")
        chance = np.asarray(self.chance)
        if np.any((chance < 0) | (chance >= 1)):
            raise ValueError("chance levels must lie in [0, 1)")
        if np.any(np.asarray(self.group_size) <= 0):
            raise ValueError("group_size must be the effective size (> 0); resolve -1 with law.effective_group_size")
        law.check_domain(self.bits, self.group_size, self.calib_samples, self.params)
        for name, idx, names in (
            ("task", self.task, self.task_names),
            ("tier", self.tier, self.tier_names),
            ("family", self.family, self.family_names),
        ):
            idx = np.asarray(idx)
            if np.any((idx < 0) | (idx >= len(names))):
                raise ValueError(f"{name} index out of range: {len(names)} {name} names given")
        tier, task = np.asarray(self.tier, dtype=int), np.asarray(self.task, dtype=int)
        for t, name in enumerate(self.tier_names):
            if not np.any(tier == t):
                raise ValueError(f"tier {name} has no rows; fit only the tiers present, or add data for it")
        for k, name in enumerate(self.task_names):
            tiers_k = np.unique(tier[task == k])
            if tiers_k.size == 0:
                raise ValueError(f"task {name} has no rows; drop it from task_names")
            if tiers_k.size > 1:
                raise ValueError(f"task {name} appears in more than one tier; a task belongs to exactly one tier")
        warnings = []
        if np.unique(np.asarray(self.params)).size < 2:
            msg = "a single model size: alpha (the N exponent) is not identifiable"
            if not allow_single_size:
                raise ValueError(msg + "; add a second model size, or allow_single_size=True to keep alpha's prior")
            warnings.append(msg + "; alpha is its prior")
        for name, exponent in (("bits", "beta"), ("calib_samples", "gamma"), ("group_size", "delta")):
            if np.unique(np.asarray(getattr(self, name))).size < 2:
                warnings.append(f"{name} never varies: {exponent} is its prior")
        return warnings


@dataclass(frozen=True)
class Design:
    """Centred law features, built once from numpy data (constants inside the model)."""

    centre: np.ndarray  # (4,) mean of [ln N, ln log2 B, ln log2 Cb, ln G] over the rows
    constant: np.ndarray  # (4,) bool: the factor never varies (its exponent is prior-only)
    model: np.ndarray  # (R,) index of the (model, tier) pair each row belongs to
    n_pairs: int
    n_models: int
    pair_tier: np.ndarray  # (n_pairs,) tier of each (model, tier) pair

    @classmethod
    def of(cls, data: FitData) -> Design:
        raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 1:]  # drop the 1s
        constant = np.ptp(raw, axis=0) == 0
        centre = np.where(constant, raw[0], raw.mean(axis=0))
        model_keys = np.stack([np.asarray(data.family, dtype=float), np.asarray(data.params, dtype=float)], axis=1)
        _, model = np.unique(model_keys, axis=0, return_inverse=True)
        pair_keys = np.stack([model.ravel(), np.asarray(data.tier, dtype=int)], axis=1)
        pairs, pair = np.unique(pair_keys, axis=0, return_inverse=True)
        return cls(
            centre=centre,
            constant=constant,
            model=pair.ravel().astype(int),
            n_pairs=int(pair.max()) + 1,
            n_models=int(model.max()) + 1,
            pair_tier=pairs[:, 1].astype(int),
        )


def ln_a_from_centred(c: Any, slopes: Any, centre: np.ndarray) -> Any:
    """ln A on the law's scale from the centred intercept c and the exponents (last axis: alpha, beta, ...)."""
    return c - (slopes * centre[: slopes.shape[-1]]).sum(axis=-1)


def centred_coefs(data: FitData, design: Design, d: int) -> np.ndarray:
    """(d,) 1.0 where a coefficient's group levels are centred, 0.0 where non-centred.

    Centred where the data pin the coefficient in every (family, task) group: always the intercept c, and the
    B exponent where every group has at least two bit-widths. alpha stays non-centred (the model-size effects
    leave it weakly pinned), and so do gamma and delta: with their small scales (tau, sigma ~ 0.02) a centred
    site makes a funnel, and in published tables Cb, often G, take one value per family (measured on 300
    simulated configurations: centring them too lowered the ESS of tau from ~45 to ~10 per 150 draws).
    """
    raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 2]  # ln log2 B
    group = np.asarray(data.family, dtype=int) * len(data.task_names) + np.asarray(data.task, dtype=int)
    varies = all(np.ptp(raw[group == g]) > 0 for g in np.unique(group))
    return np.array([1.0, 0.0, float(varies), 0.0, 0.0][:d])


def _level(name: str, loc: Any, scale: Any, centred: Any) -> Any:
    """Sample site ``name`` for theta ~ Normal(loc, scale), centred where ``centred`` is 1, else non-centred.

    Centred (value = theta) suits a coefficient the data pin in every group; non-centred (value = (theta - loc)
    / scale) one the data barely inform, where a centred site would make a funnel with its scale. Returns theta.
    """
    import numpyro
    import numpyro.distributions as dist

    raw = numpyro.sample(name, dist.Normal(loc * centred, scale**centred))
    return raw * scale ** (1.0 - centred) + loc * (1.0 - centred)


def _beta_binomial(a: Any, b: Any, n: Any) -> Any:
    """numpyro's BetaBinomial with a log density written in lgamma alone (same value, ~10x cheaper gradient)."""
    import numpyro.distributions as dist
    from jax.scipy.special import gammaln

    class _BetaBinomial(dist.BetaBinomial):
        def log_prob(self, value: Any) -> Any:
            a, b, n = self.concentration1, self.concentration0, self.total_count
            return (
                gammaln(n + 1.0)
                - gammaln(value + 1.0)
                - gammaln(n - value + 1.0)
                + gammaln(value + a)
                + gammaln(n - value + b)
                - gammaln(n + a + b)
                + gammaln(a + b)
                - gammaln(a)
                - gammaln(b)
            )

    return _BetaBinomial(a, b, n)


def stratified_law(
    data: FitData,
    design: Design | None = None,
    *,
    law_form: str = "four_factor",
    likelihood: str = "beta_binomial",
    priors: Priors = DEFAULT_PRIORS,
    observed: bool = True,
) -> None:
    """NumPyro model: the stratified law with partial pooling (family -> tier -> task) on correct counts.

    Sites reported by fit.infer: ``mu`` (T, d) tier population laws, ``theta_tier`` (F, T, d) and
    ``theta_task`` (F, K, d) on the centred scale (column 0 is c). ``observed=False`` leaves the counts
    unobserved (posterior predictive draws). Pass ``design`` to skip rebuilding it at every trace.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    coefs = law_coefs(law_form)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)}")
    d = len(coefs)
    design = design if design is not None else Design.of(data)
    n_tiers, n_fams = len(data.tier_names), len(data.family_names)
    prior_mean, prior_sd = priors.for_tiers(data.tier_names, d)
    task_tier = jnp.asarray(data.task_tier)

    # Levels with a single member are dropped, not sampled: with one family the family law is the population
    # law (no tau), and a tier with one task has that task's law as its tier law (no sigma). Each kept level is
    # centred for the coefficients the data pin per group (CENTRED) and non-centred for the rest (``_level``).
    centred = jnp.asarray(centred_coefs(data, design, d))
    multi = np.bincount(data.task_tier, minlength=n_tiers)[data.task_tier] > 1  # (K,) task's tier has > 1 task
    with numpyro.plate("coef", d, dim=-1):
        tau = numpyro.sample("tau", dist.HalfNormal(jnp.asarray(priors.tau[:d])))
        sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.asarray(priors.sigma[:d])))
        with numpyro.plate("tiers", n_tiers, dim=-2):
            mu_z = numpyro.sample("mu_z", dist.Normal(0.0, 1.0))
    mu = numpyro.deterministic("mu", jnp.asarray(prior_mean) + jnp.asarray(prior_sd) * mu_z)
    if n_fams > 1:
        with (
            numpyro.plate("coef_t", d, dim=-1),
            numpyro.plate("tiers_t", n_tiers, dim=-2),
            numpyro.plate("families_t", n_fams, dim=-3),
        ):
            theta_tier = _level("z_tier", mu[None], tau, centred)
    else:
        theta_tier = mu[None]
    theta_tier = numpyro.deterministic("theta_tier", theta_tier)
    theta_task = theta_tier[:, task_tier]
    if multi.any():
        idx = np.flatnonzero(multi)
        with (
            numpyro.plate("coef_k", d, dim=-1),
            numpyro.plate("tasks", idx.size, dim=-2),
            numpyro.plate("families_k", n_fams, dim=-3),
        ):
            theta_multi = _level("z_task", theta_task[:, idx], sigma, centred)
        theta_task = theta_task.at[:, idx].set(theta_multi)
    theta_task = numpyro.deterministic("theta_task", theta_task)

    with numpyro.plate("tiers_1", n_tiers):
        omega = numpyro.sample("omega", dist.HalfNormal(priors.omega))
        log_phi = numpyro.sample("log_phi", dist.Normal(priors.log_phi_mean, priors.log_phi_sd))
    with numpyro.plate("pairs", design.n_pairs):
        # Centred: ~15-40 rows per (model, tier) pair pin each deviation far tighter than omega does.
        u_model = numpyro.sample("z_model", dist.Normal(0.0, omega[jnp.asarray(design.pair_tier)]))

    fam, task, tier = (jnp.asarray(a, dtype=jnp.int32) for a in (data.family, data.task, data.tier))
    th = theta_task[fam, task]  # (R, d), centred scale
    slopes = th[:, 1:]
    ln_a = ln_a_from_centred(th[:, 0], slopes, design.centre) + u_model[jnp.asarray(design.model)]
    # The law sees the original factors; with ln_a taken off the centre, a constant factor's exponent cancels.
    params, bits, gsize, cb = (jnp.asarray(a) for a in (data.params, data.bits, data.group_size, data.calib_samples))
    if law_form == "four_factor":
        coef = law.LawCoef(ln_a, slopes[:, 0], slopes[:, 1], slopes[:, 2], slopes[:, 3])
        acc_adj = law.four_factor(coef, params, bits, gsize, cb, xp=jnp)
    else:
        acc_adj = law.baseline(law.LawCoef(ln_a, slopes[:, 0], slopes[:, 1]), params, bits, xp=jnp)
    chance = jnp.asarray(data.chance)
    p = jnp.clip(law.denormalize(acc_adj, chance, xp=jnp), P_EPS, 1.0 - P_EPS)

    n = jnp.asarray(np.asarray(data.n, dtype=int))
    obs = jnp.asarray(np.asarray(data.correct, dtype=int)) if observed else None
    with numpyro.plate("rows", len(data)):
        if likelihood == "beta_binomial":
            phi = jnp.exp(log_phi)[tier]
            numpyro.sample("correct", _beta_binomial(p * phi, (1.0 - p) * phi, n), obs=obs)
        else:
            numpyro.sample("correct", dist.Binomial(n, probs=p), obs=obs)


def simulate(
    data: FitData,
    *,
    seed: int = 0,
    truth: dict[str, Any] | None = None,
    law_form: str = "four_factor",
    likelihood: str = "beta_binomial",
    priors: Priors = DEFAULT_PRIORS,
) -> tuple[FitData, dict[str, np.ndarray]]:
    """Counts drawn from the model itself at data's rows (data.correct is ignored); returns (data, all sites).

    ``truth`` fixes any latent site (e.g. ``mu_z``, ``tau``, ``sigma``, ``omega``, ``log_phi``, ``z_tier``);
    the rest are drawn from their priors. ``mu_z_for`` turns tier laws into ``mu_z``.
    """
    import jax
    from numpyro import handlers

    design = Design.of(data)
    model = handlers.seed(handlers.condition(stratified_law, data=truth or {}), jax.random.PRNGKey(seed))
    trace = handlers.trace(model).get_trace(
        data, design, law_form=law_form, likelihood=likelihood, priors=priors, observed=False
    )
    sites = {
        name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] in ("sample", "deterministic")
    }
    out = FitData(**{**data.__dict__, "correct": sites["correct"].astype(int)})
    return out, sites


def mu_z_for(
    mu: Any, tiers: Sequence[str], law_form: str = "four_factor", priors: Priors = DEFAULT_PRIORS
) -> np.ndarray:
    """The ``mu_z`` site value that puts the tier population laws at ``mu`` (T, d; centred scale, c first)."""
    mean, sd = priors.for_tiers(tiers, len(law_coefs(law_form)))
    return (np.asarray(mu, dtype=float) - mean) / sd


# Task shapes for synthetic data: (name, tier, chance, items), three tasks per tier like the tier map's.
SYNTHETIC_TASKS: tuple[tuple[str, str, float, int], ...] = (
    ("triviaqa", "KM", 0.0, 17944),
    ("nq_open", "KM", 0.0, 3610),
    ("truthfulqa_mc1", "KM", 0.25, 817),
    ("mmlu", "KA", 0.25, 14042),
    ("hellaswag", "KA", 0.25, 10042),
    ("arc_easy", "KA", 0.25, 2376),
    ("gsm8k", "KR", 0.0, 1319),
    ("arc_challenge", "KR", 0.25, 1172),
    ("strategyqa", "KR", 0.5, 2290),
)
SYNTHETIC_FAMILIES: dict[str, tuple[float, ...]] = {
    "qwen3": (0.6e9, 1.7e9, 4e9, 8e9, 14e9),
    "llama3": (1e9, 3e9, 8e9),
}


def synthetic_rows(
    num_configs: int = 300,
    *,
    tasks_per_tier: int = 3,
    tiers: Sequence[str] = TIERS,
    families: dict[str, tuple[float, ...]] | None = None,
    bits: Sequence[float] = (3, 4, 8),
    group_sizes: Sequence[float] = (32, 64, 128, 1024),
    calib_samples: Sequence[float] = (8, 32, 128, 1024),
    seed: int = 0,
) -> FitData:
    """A paper-like grid: ``num_configs`` (model, B, G, Cb) configurations drawn without replacement, each
    evaluated on ``tasks_per_tier`` tasks of every tier. Counts are zero; fill them with ``simulate``."""
    rng = np.random.default_rng(seed)
    families = families or SYNTHETIC_FAMILIES
    grid = [
        (f, n, b, g, c)
        for f, sizes in families.items()
        for n in sizes
        for b in bits
        for g in group_sizes
        for c in calib_samples
    ]
    if num_configs > len(grid):
        raise ValueError(f"the grid has only {len(grid)} configurations")
    configs = [grid[i] for i in sorted(rng.choice(len(grid), size=num_configs, replace=False))]
    tasks = [t for tier in tiers for t in [s for s in SYNTHETIC_TASKS if s[1] == tier][:tasks_per_tier]]
    rows = [(cfg, task) for cfg in configs for task in tasks]
    return FitData.from_records(
        params=[c[1] for c, _ in rows],
        bits=[c[2] for c, _ in rows],
        group_size=[c[3] for c, _ in rows],
        calib_samples=[c[4] for c, _ in rows],
        correct=np.zeros(len(rows), dtype=int),
        n=[t[3] for _, t in rows],
        chance=[t[2] for _, t in rows],
        task=[t[0] for _, t in rows],
        tier=[t[1] for _, t in rows],
        family=[c[0] for c, _ in rows],
        tiers=list(tiers),
    )
