"""Inference for the Bayesian stratified law (fit.bayes): NUTS by default, SVI as the fast path.

Both return a ``Posterior``: thinned draws of the law's coefficients (ln_a, alpha, beta, gamma, delta, on
fit/law.py's scale) per (family, tier), per (family, task) and per tier population, plus diagnostics:

- NUTS: split R-hat (max) and effective sample size (min) per parameter group, divergent transitions.
- SVI: a convergence check, never assumed. The ELBO's windowed mean must have stopped moving (relative change
  between the last two windows) and the guide's locations must have stopped moving: over the last window no
  location moves more than ``loc_tol`` of its own posterior sd. Both numbers are reported with the verdict.

``diagnostics_ok`` applies thresholds (default R-hat <= 1.01, ESS >= 400, no divergences; SVI: converged);
writers of profiles refuse to write one that fails unless forced. ``posterior_predictive_check`` reports the
fraction of observed counts inside their central predictive interval, overall and per tier and task.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fit.bayes import DEFAULT_PRIORS, LIKELIHOODS, Priors, law_coefs, stratified_law
from fit.data import Design, FitData, ln_a_from_centred
from strata import law
from strata.profile import NutsSettings, SviSettings


def _use_host_cores() -> None:
    """Expose each CPU core to JAX as a device, so NUTS chains run in parallel (numpyro.set_host_device_count
    without importing numpyro). Effective only before JAX's backend starts, which importing this module does not
    do; where it started already, chains run vectorized, both chains stepping in lockstep (bench/README.md)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={os.cpu_count() or 1}".strip()


_use_host_cores()


def _use_compilation_cache() -> None:
    """Keep JAX's compiled programs on disk (JAX's persistent compilation cache), so a fit of data with the
    same shapes as an earlier one skips most XLA compilation. Default ~/.cache/strata/jax; JAX_COMPILATION_CACHE_DIR
    moves it, or turns it off when set to an empty string. Set at call time: JAX reads its environment only
    when first imported, which a caller may have done before importing this module."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None) or os.environ.get("JAX_COMPILATION_CACHE_DIR") == "":
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(base, "strata", "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


DETERMINISTIC_SITES: tuple[str, ...] = ("mu", "theta_tier", "theta_task")
OBSERVED_SITES: tuple[str, ...] = ("correct",)


def latent_sites(draws: dict[str, Any]) -> dict[str, Any]:
    """The sampled latent sites of a draw dict (the model's family sites are named per family: m_fam0, ...)."""
    return {k: v for k, v in draws.items() if k not in DETERMINISTIC_SITES + OBSERVED_SITES}


COEF_GROUPS: tuple[str, ...] = ("population", "tier", "task")


@dataclass(frozen=True)
class Thresholds:
    """Limits a fit must meet before a profile is written (Vehtari et al. 2021 for R-hat and ESS)."""

    r_hat_max: float = 1.01
    ess_min: float = 400.0
    divergences_max: int = 0


@dataclass
class SVIConvergence:
    converged: bool
    elbo_rel_change: float  # |mean(last window) - mean(window before)| / |mean(last window)|
    loc_shift_sd: float  # max over guide locations of |shift over the last window| / posterior sd
    window: int
    final_loss: float
    elbo_tol: float
    loc_tol: float


@dataclass
class Diagnostics:
    method: str
    r_hat: dict[str, float] = field(default_factory=dict)  # group -> max split R-hat (NUTS)
    ess: dict[str, float] = field(default_factory=dict)  # group -> min effective sample size (NUTS)
    divergences: int = 0
    num_chains: int = 1
    num_draws: int = 0  # draws per chain before thinning
    svi: SVIConvergence | None = None
    mean_steps: float = 0.0  # NUTS: mean leapfrog steps per draw (2^max_tree_depth - 1 when trees hit the cap)

    def problems(self, thresholds: Thresholds = Thresholds()) -> list[str]:
        """One line per failed check; empty when the fit passes."""
        out = []
        if self.method == "svi":
            s = self.svi
            if s is None or not s.converged:
                detail = (
                    "" if s is None else f" (ELBO change {s.elbo_rel_change:.2g}, loc shift {s.loc_shift_sd:.2g} sd)"
                )
                out.append("SVI has not converged" + detail + "; run more steps or use NUTS")
            return out
        for group, r in self.r_hat.items():
            if not r <= thresholds.r_hat_max:
                out.append(f"R-hat {r:.3f} > {thresholds.r_hat_max} in {group}")
        for group, e in self.ess.items():
            if not e >= thresholds.ess_min:
                out.append(f"ESS {e:.0f} < {thresholds.ess_min:.0f} in {group}")
        if self.divergences > thresholds.divergences_max:
            out.append(f"{self.divergences} divergent transitions (max {thresholds.divergences_max})")
        return out


@dataclass
class Posterior:
    """Thinned posterior draws on the law's scale, with what made them and how well they mixed.

    ``population[f]`` (S, T): tier t's law for a new family; ``tier[f]`` (S, F, T): family f's law for tier t;
    ``task[f]`` (S, F, K): family f's law for task k; f in ln_a, alpha, beta, gamma, delta (zeros for gamma,
    delta under the baseline law). ``hyper``: tau, sigma (S, d), omega, phi (S, T). ``samples``: the latent
    sites (S, ...) for posterior predictions. The per-(model, task) effects are not part of the law: a new
    model size's accuracy varies around the law with sd omega on the ln(-ln Acc_adj) scale.
    """

    method: str
    law_form: str
    likelihood: str
    tier_names: list[str]
    task_names: list[str]
    family_names: list[str]
    task_tier: np.ndarray
    centre: np.ndarray  # (4,) features' centre of the population laws
    family_centre: np.ndarray  # (F, 4) of each family's laws (fit.data.Design)
    population: dict[str, np.ndarray]
    tier: dict[str, np.ndarray]
    task: dict[str, np.ndarray]
    hyper: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    diagnostics: Diagnostics
    warnings: list[str]
    priors: Priors
    seconds: float
    task_observed: np.ndarray | None = None  # (F, K): which family measured which task (others are prior draws)

    @property
    def num_draws(self) -> int:
        return int(self.tier["ln_a"].shape[0])

    def coef(self, family: str | None = None, *, tier: str | None = None, task: str | None = None) -> law.LawCoef:
        """Draws (S,) of one law: a family's tier or task law, or (family None) a tier's population law."""
        if (tier is None) == (task is None):
            raise ValueError("give exactly one of tier= or task=")
        if family is None:
            if tier is None:
                raise ValueError("a task law needs a family; the population law is per tier")
            t = _index(self.tier_names, tier, "tier")
            return law.LawCoef(*(self.population[f][:, t] for f in law.COEF_NAMES))
        fam = _index(self.family_names, family, "family")
        if tier is not None:
            t = _index(self.tier_names, tier, "tier")
            return law.LawCoef(*(self.tier[f][:, fam, t] for f in law.COEF_NAMES))
        k = _index(self.task_names, task or "", "task")
        return law.LawCoef(*(self.task[f][:, fam, k] for f in law.COEF_NAMES))

    def new_family(self, tier: str, *, seed: int = 0) -> law.LawCoef:
        """Draws (S,) of tier's law for a family the fit has not seen: the population law plus one family
        deviation drawn with tau, the spread between families. With two or more families fitted tau has a
        posterior; with one, the data say nothing about it and tau is drawn from its prior (fit.bayes.Priors).
        """
        t = _index(self.tier_names, tier, "tier")
        rng = np.random.default_rng(seed)
        pop = self.population
        s, d = self.num_draws, self.hyper["tau"].shape[-1]
        tau = self._tau(rng)
        dev = tau * rng.standard_normal((s, d))  # centred scale: c, alpha, beta, ...
        slopes = dev[:, 1:]
        ln_a = pop["ln_a"][:, t] + ln_a_from_centred(dev[:, 0], slopes, self.centre)
        rest = [pop[f][:, t] + (slopes[:, j] if j < d - 1 else 0.0) for j, f in enumerate(law.COEF_NAMES[1:])]
        return law.LawCoef(ln_a, *rest)

    def _tau(self, rng: np.random.Generator) -> np.ndarray:
        """Draws (S, d) of tau: its posterior, or with one family fitted (tau not identified) its prior's."""
        tau = self.hyper["tau"]
        if len(self.family_names) < 2:
            tau = np.abs(rng.standard_normal(tau.shape)) * np.asarray(self.priors.tau[: tau.shape[-1]])
        return np.asarray(tau)

    def new_family_task(self, task: str, *, seed: int = 0) -> law.LawCoef:
        """Draws (S,) of a task's law for a family the fit has not seen: its tier's new-family law (the same
        family deviation, ``new_family``) moved by the task's offset from its tier, and by a family's own
        deviation from that offset.

        The model keeps task offsets per family (theta_{f,k} about the family's mean task law, sd sigma), with no
        population task effect: drawn from sigma alone, a new family's ARC-Easy would forget that ARC-Easy is
        easier than ARC-Challenge for every family (sigma holds those differences of difficulty; on the
        published rows that gave 90% intervals 60 points wide). So the offset is the mean over the fitted
        families that measured the task (of theta_{f,k} - the mean of family f's laws of that tier's tasks), and
        the deviation's sd is how far families' offsets of the same task differ, pooled over the tier's tasks
        that two or more families measured (a family x task interaction: Qwen3's MMLU sits far above the Llamas'
        for their ARC scores). Where no task of the tier was measured by two families the interaction is not
        identified and tau, the between-family spread of a tier law, stands in. On the centred scale, as tau."""
        k = _index(self.task_names, task, "task")
        t = int(self.task_tier[k])
        tier = self.new_family(self.tier_names[t], seed=seed)
        names = law.COEF_NAMES
        slopes = np.stack([self.task[f] for f in names[1:]], axis=-1)  # (S, F, K, 4)
        theta = np.concatenate(
            [(self.task["ln_a"] + (slopes * self.centre[: slopes.shape[-1]]).sum(axis=-1))[..., None], slopes],
            axis=-1,
        )  # (S, F, K, 5): centred intercept c and the exponents
        n_f, n_k = theta.shape[1], theta.shape[2]
        seen = np.ones((n_f, n_k), bool) if self.task_observed is None else np.asarray(self.task_observed, bool)
        members = seen & (np.asarray(self.task_tier) == t)[None, :]  # (F, K)
        fams = [f for f in range(n_f) if members[f].any()]
        offset = {
            f: theta[:, f] - theta[:, f][:, members[f]].mean(axis=1, keepdims=True) for f in fams
        }  # f -> (S, K, 5), meaningful where members[f]
        measured = [f for f in fams if members[f, k]]
        if not measured:  # no fitted family measured it: the tier's law, the task unknown within it
            return tier
        mean_k = np.mean([offset[f][:, k] for f in measured], axis=0)  # (S, 5)
        sq, dof = np.zeros_like(mean_k), 0
        for j in range(n_k):
            by = [offset[f][:, j] for f in fams if members[f, j]]
            if len(by) >= 2:
                sq += ((np.array(by) - np.mean(by, axis=0)) ** 2).sum(axis=0)
                dof += len(by) - 1
        rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
        tau = self._tau(rng)
        spread = np.sqrt(sq / dof) if dof else np.pad(tau, ((0, 0), (0, theta.shape[-1] - tau.shape[-1])))
        dev = mean_k + spread * rng.standard_normal(mean_k.shape)
        ln_a = tier.ln_a + ln_a_from_centred(dev[:, 0], dev[:, 1:], self.centre)
        rest = [getattr(tier, f) + dev[:, 1 + j] for j, f in enumerate(names[1:])]
        return law.LawCoef(ln_a, *rest)

    def interval(self, group: str, level: float = 0.9) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(mean, lo, hi) per law coefficient for a coefficient group (population, tier or task)."""
        draws = {"population": self.population, "tier": self.tier, "task": self.task}[group]
        q = (1.0 - level) / 2.0
        return {
            f: (a.mean(axis=0), np.quantile(a, q, axis=0), np.quantile(a, 1.0 - q, axis=0)) for f, a in draws.items()
        }

    def diagnostics_ok(self, thresholds: Thresholds = Thresholds()) -> bool:
        return not self.diagnostics.problems(thresholds)


def _index(names: list[str], name: str, what: str) -> int:
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; fitted: {', '.join(names)}")
    return names.index(name)


def _prepare(data: FitData, law_form: str, likelihood: str, allow_single_size: bool) -> tuple[Design, list[str]]:
    law_coefs(law_form)  # unknown law form -> ValueError before any work
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)}")
    warnings = data.validate(allow_single_size=allow_single_size)
    return Design.of(data), warnings


def _to_law_scale(theta: np.ndarray, centre: np.ndarray) -> dict[str, np.ndarray]:
    """Centred coefficient draws (..., d) -> law-scale dict; gamma, delta zero when not sampled."""
    slopes = theta[..., 1:]
    out = {"ln_a": ln_a_from_centred(theta[..., 0], slopes, centre)}
    for j, f in enumerate(law.COEF_NAMES[1:]):
        out[f] = slopes[..., j] if j < slopes.shape[-1] else np.zeros_like(theta[..., 0])
    return out


def _build(
    method: str,
    data: FitData,
    design: Design,
    draws: dict[str, np.ndarray],
    *,
    law_form: str,
    likelihood: str,
    priors: Priors,
    diagnostics: Diagnostics,
    warnings: list[str],
    seconds: float,
) -> Posterior:
    n, d = draws["mu"].shape[0], draws["mu"].shape[-1]
    return Posterior(
        method=method,
        law_form=law_form,
        likelihood=likelihood,
        tier_names=list(data.tier_names),
        task_names=list(data.task_names),
        family_names=list(data.family_names),
        task_tier=data.task_tier,
        centre=design.centre,
        family_centre=design.family_centre,
        **_law_scale_groups(draws, design),
        hyper={
            "tau": draws.get("tau", np.zeros((n, d))),
            "sigma": draws.get("sigma", np.zeros((n, d))),
            "omega": draws["omega"],
            "phi": np.exp(draws["log_phi"]),
        },
        samples=latent_sites(draws),  # levels with one member have no site
        diagnostics=diagnostics,
        warnings=warnings,
        priors=priors,
        seconds=seconds,
        task_observed=_observed(design, len(data.family_names), len(data.task_names)),
    )


def _observed(design: Design, n_f: int, n_k: int) -> np.ndarray:
    seen = np.ones((n_f, n_k), bool)
    if len(design.unobserved):
        seen[design.unobserved[:, 0], design.unobserved[:, 1]] = False
    return seen


def _law_scale_groups(draws: dict[str, np.ndarray], design: Design) -> dict[str, dict[str, np.ndarray]]:
    """The population (mu), tier and task laws of draws on the law's scale: population laws centred on the
    data's centre, a family's laws on its own (Design.family_centre)."""
    per_family = design.family_centre[:, None, :]
    centres = (design.centre, per_family, per_family)
    sites = ("mu", "theta_tier", "theta_task")
    return {g: _to_law_scale(draws[s], c) for g, s, c in zip(COEF_GROUPS, sites, centres, strict=True)}


def _groups(chains: dict[str, np.ndarray], design: Design, law_form: str) -> dict[str, np.ndarray]:
    """Arrays (C, S, -1) per diagnostic group; only sampled coefficients (not the zero gamma, delta)."""
    d = len(law_coefs(law_form))
    out = {}
    for group, scaled in _law_scale_groups(chains, design).items():
        out[group] = np.stack([scaled[f] for f in law.COEF_NAMES[:d]], axis=-1)
    out["scales"] = np.concatenate(
        [chains[s].reshape((*chains[s].shape[:2], -1)) for s in ("tau", "sigma", "omega", "log_phi") if s in chains],
        axis=-1,
    )
    out["model_effects"] = chains["v_model"]
    return {g: a.reshape((*a.shape[:2], -1)) for g, a in out.items()}


def _x64(fn: Any) -> Any:
    """Run in float64: lgamma of ~18,000-item counts loses ~0.01 nats per row in float32 (noise NUTS feels)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import jax

        _use_compilation_cache()
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


@_x64
def run_nuts(
    data: FitData,
    settings: NutsSettings | None = None,
    *,
    law_form: str = "four_factor",
    priors: Priors = DEFAULT_PRIORS,
    allow_single_size: bool = False,
    progress_bar: bool = False,
) -> Posterior:
    """NUTS on the stratified law, conditioned on data.correct (run_nuts_many with one count vector); settings
    default to NutsSettings()."""
    return run_nuts_many(
        data,
        [np.asarray(data.correct)],
        settings,
        law_form=law_form,
        priors=priors,
        allow_single_size=allow_single_size,
        progress_bar=progress_bar,
    )[0]


@_x64
def run_nuts_many(
    data: FitData,
    counts: list[np.ndarray],
    settings: NutsSettings | None = None,
    *,
    law_form: str = "four_factor",
    priors: Priors = DEFAULT_PRIORS,
    allow_single_size: bool = False,
    progress_bar: bool = False,
) -> list[Posterior]:
    """One NUTS fit per count vector in ``counts`` (each (R,) for data's rows), compiled once for all.

    The counts are a traced model argument (``jit_model_args``), so replicate data sets of one design (as in
    simulation-based calibration) cost one compilation. Chains run in parallel when JAX has as many host devices,
    else vectorized.
    """
    import functools

    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, init_to_median

    st = settings or NutsSettings()
    design, warnings = _prepare(data, law_form, st.likelihood, allow_single_size)
    for c in counts:
        FitData(**{**data.__dict__, "correct": np.asarray(c)}).validate(allow_single_size=allow_single_size)
    model = functools.partial(stratified_law, data, design, law_form=law_form, likelihood=st.likelihood, priors=priors)
    kernel = NUTS(
        model,
        target_accept_prob=st.target_accept,
        max_tree_depth=st.max_tree_depth,
        dense_mass=st.dense_mass,
        init_strategy=init_to_median(num_samples=15),
    )
    # Vectorized rather than sequential when the host has too few devices: one compilation, one initialisation
    # (traced, not op by op), and both chains advance in the same loop.
    chain_method = "parallel" if jax.local_device_count() >= st.chains > 1 else "vectorized"
    mcmc = MCMC(
        kernel,
        num_warmup=st.warmup,
        num_samples=st.samples,
        num_chains=st.chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
        jit_model_args=True,
    )
    out = []
    for i, c in enumerate(counts):
        start = time.perf_counter()
        mcmc.run(
            jax.random.PRNGKey(st.seed + i),
            correct=jnp.asarray(np.asarray(c, dtype=int)),
            extra_fields=("diverging", "num_steps"),
        )
        chains = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        diagnostics = _nuts_diagnostics(chains, mcmc.get_extra_fields(group_by_chain=True), design, law_form, st)
        seconds = time.perf_counter() - start
        thin = max(1, math.ceil(st.chains * st.samples / st.max_draws))
        flat = {k: v.reshape((-1, *v.shape[2:]))[::thin] for k, v in chains.items()}
        fitted = FitData(**{**data.__dict__, "correct": np.asarray(c)})
        out.append(
            _build(
                "nuts",
                fitted,
                design,
                flat,
                law_form=law_form,
                likelihood=st.likelihood,
                priors=priors,
                diagnostics=diagnostics,
                warnings=warnings,
                seconds=seconds,
            )
        )
    return out


def _nuts_diagnostics(
    chains: dict[str, np.ndarray], extra: dict[str, Any], design: Design, law_form: str, st: NutsSettings
) -> Diagnostics:
    """Split R-hat (max) and bulk ESS (min) per parameter group, divergences and mean tree size of one run."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    r_hat, ess = {}, {}
    for group, arr in _groups(chains, design, law_form).items():
        if st.samples >= 4:
            r_hat[group] = float(np.nanmax(split_gelman_rubin(arr)))
            ess[group] = float(np.nanmin(effective_sample_size(arr)))
    return Diagnostics(
        method="nuts",
        r_hat=r_hat,
        ess=ess,
        divergences=int(np.asarray(extra["diverging"]).sum()),
        num_chains=st.chains,
        num_draws=st.samples,
        mean_steps=float(np.asarray(extra["num_steps"]).mean()),
    )


@_x64
def run_svi(
    data: FitData,
    settings: SviSettings | None = None,
    *,
    law_form: str = "four_factor",
    priors: Priors = DEFAULT_PRIORS,
    allow_single_size: bool = False,
) -> Posterior:
    """SVI with a mean-field normal guide (AutoDiagonalNormal) and optax adam on a cosine-decayed learning rate.

    The rate decays from ``lr`` to ``lr / 100`` so the guide settles instead of jittering at its optimum; the
    convergence check then compares the last ``window`` steps (default steps // 10) with the window before.
    """
    import functools

    import jax
    import jax.numpy as jnp
    from numpyro.infer import init_to_median
    from numpyro.infer.autoguide import AutoDiagonalNormal

    st = settings or SviSettings()
    design, warnings = _prepare(data, law_form, st.likelihood, allow_single_size)
    window = st.window or max(st.steps // 10, 10)
    if st.steps < 2 * window:
        raise ValueError(f"steps ({st.steps}) must be at least twice the convergence window ({window})")
    start = time.perf_counter()
    model = functools.partial(
        stratified_law, data, design, law_form=law_form, likelihood=st.likelihood, priors=priors,
        correct=jnp.asarray(np.asarray(data.correct, dtype=int)),
    )  # fmt: skip
    # AutoDiagonalNormal is AutoNormal's family (mean-field normal in the unconstrained space) on one flat
    # vector: one draw and one log density per step instead of one per site, which compiles faster for the same
    # posterior approximation.
    guide = AutoDiagonalNormal(model, init_loc_fn=init_to_median(num_samples=15), init_scale=0.05)
    key_run, key_draw = jax.random.split(jax.random.PRNGKey(st.seed))
    params, before, losses = _optimize(model, guide, key_run, st, window)
    conv = _svi_convergence(params, before, losses, window, st)
    draws = _guide_draws(model, guide, key_draw, params, st.num_draws)
    seconds = time.perf_counter() - start
    diagnostics = Diagnostics(method="svi", num_chains=1, num_draws=st.num_draws, svi=conv)
    return _build(
        "svi",
        data,
        design,
        draws,
        law_form=law_form,
        likelihood=st.likelihood,
        priors=priors,
        diagnostics=diagnostics,
        warnings=warnings,
        seconds=seconds,
    )


def _optimize(
    model: Any, guide: Any, key: Any, st: SviSettings, window: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Run the optimizer; return the guide parameters averaged over the last window and the window before, and
    the losses. Steps round up to a multiple of window."""
    import jax
    import jax.numpy as jnp
    import optax
    from numpyro.infer import SVI, Trace_ELBO

    schedule = optax.cosine_decay_schedule(st.lr, st.steps, alpha=0.01)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO(num_particles=st.num_particles))
    # Initialisation traced and compiled as one function: run eagerly, each of the model's few thousand operations
    # compiles on its own. The steps run as equal chunks of one compiled scan (one compilation, not one per length).
    state = jax.jit(svi.init)(key)

    def step(carry: Any, _: Any) -> Any:
        st_, total = carry
        st_, loss = svi.update(st_)
        return (st_, jax.tree.map(jnp.add, total, svi.get_params(st_))), loss

    # Each chunk also returns its iterates' mean (Polyak-Ruppert averaging): adam's last iterate jitters by a
    # good part of a posterior sd even at lr / 100, so the convergence check compares window means, and the guide
    # is the last window's mean.
    chunk = jax.jit(
        lambda state: jax.lax.scan(step, (state, jax.tree.map(jnp.zeros_like, svi.get_params(state))), None, window)
    )
    chunks, means = [], []
    for _ in range(-(-st.steps // window)):
        (state, total), chunk_losses = chunk(state)
        chunks.append(np.asarray(chunk_losses))
        means.append({k: np.asarray(v) / window for k, v in total.items()})
    return means[-1], means[-2], np.concatenate(chunks)


def _svi_convergence(
    params: dict[str, np.ndarray], before: dict[str, np.ndarray], losses: np.ndarray, window: int, st: SviSettings
) -> SVIConvergence:
    """Converged when the ELBO's window mean has stopped moving and no guide location moved more than loc_tol of
    its posterior sd between the last two window means."""
    loc, sd = params["auto_loc"], np.maximum(params["auto_scale"], 1e-12)
    shift = float((np.abs(loc - before["auto_loc"]) / sd).max())
    m_last, m_prev = losses[-window:].mean(), losses[-2 * window : -window].mean()
    rel = float(abs(m_last - m_prev) / max(abs(m_last), 1e-12))
    return SVIConvergence(
        converged=bool(np.isfinite(losses[-1]) and rel <= st.elbo_tol and shift <= st.loc_tol),
        elbo_rel_change=rel,
        loc_shift_sd=shift,
        window=window,
        final_loss=float(losses[-1]),
        elbo_tol=st.elbo_tol,
        loc_tol=st.loc_tol,
    )


def _guide_draws(model: Any, guide: Any, key: Any, params: dict[str, np.ndarray], num: int) -> dict[str, np.ndarray]:
    """Latent draws from the fitted guide and the model's reported deterministic sites at them."""
    import jax
    from numpyro.infer import Predictive

    latent = jax.jit(lambda key, p: guide.sample_posterior(key, p, sample_shape=(num,)))(key, params)
    latent = latent_sites(latent)
    # One compiled function, not hundreds of eagerly dispatched (and each separately compiled) batched ops.
    det = jax.jit(
        lambda key, latent: Predictive(model, posterior_samples=latent, return_sites=list(DETERMINISTIC_SITES))(key)
    )(key, latent)
    return {k: np.asarray(v) for k, v in {**latent, **det}.items()}


# The Bayesian engines by name: each takes (data, its settings) and returns a Posterior.
INFERENCE: dict[str, Callable[..., Posterior]] = {"nuts": run_nuts, "svi": run_svi}


@dataclass
class PPCResult:
    level: float
    coverage: float  # fraction of observed counts inside their central `level` predictive interval
    by_tier: dict[str, float]
    by_task: dict[str, float]
    inside: np.ndarray  # (R,) bool per row
    lo: np.ndarray  # (R,) predictive interval on raw accuracy (correct / n)
    hi: np.ndarray


@_x64
def posterior_predictive_check(
    posterior: Posterior, data: FitData, *, level: float = 0.9, seed: int = 0, num_draws: int | None = 500
) -> PPCResult:
    """Replicate the counts of ``data``'s rows from the posterior; report how many observed ones fall inside.

    ``data`` must be the data the posterior was fitted on (the per-(model, task) effects index its rows).
    Counts are discrete, so coverage sits at or slightly above ``level`` when the model fits.
    """
    import jax
    from numpyro.infer import Predictive

    design = Design.of(data)
    latent = posterior.samples
    if num_draws is not None and posterior.num_draws > num_draws:
        step = math.ceil(posterior.num_draws / num_draws)
        latent = {k: v[::step] for k, v in latent.items()}
    if latent["v_model"].shape[-1] != design.n_pairs or len(data.task_names) != len(posterior.task_names):
        raise ValueError("posterior_predictive_check needs the data the posterior was fitted on")
    pred = jax.jit(
        lambda key, latent: Predictive(stratified_law, posterior_samples=latent, return_sites=["correct"])(
            key,
            data,
            design,
            law_form=posterior.law_form,
            likelihood=posterior.likelihood,
            priors=posterior.priors,
        )
    )(jax.random.PRNGKey(seed), latent)
    reps = np.asarray(pred["correct"])
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, q, axis=0), np.quantile(reps, 1.0 - q, axis=0)
    obs = np.asarray(data.correct)
    inside = (obs >= lo) & (obs <= hi)
    tier, task = np.asarray(data.tier), np.asarray(data.task)
    n = np.asarray(data.n, dtype=float)
    return PPCResult(
        level=level,
        coverage=float(inside.mean()),
        by_tier={t: float(inside[tier == i].mean()) for i, t in enumerate(data.tier_names)},
        by_task={k: float(inside[task == i].mean()) for i, k in enumerate(data.task_names)},
        inside=inside,
        lo=lo / n,
        hi=hi / n,
    )
