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
it, 300 configurations from 5 model sizes would pin alpha as if they were 300 independent sizes.

Hierarchy (the model's meaning), per law coefficient (c, alpha, beta, gamma, delta):

    mu_t            ~ Normal(prior mean_t, prior sd)             tier t's population law (families share it)
    theta_{f,t}     ~ Normal(mu_t, tau)                         family f's law for tier t
    theta_{f,k}     ~ Normal(theta_{f,t(k)}, sigma)             family f's law for task k of tier t(k)
    tau, sigma ~ HalfNormal(per coefficient); omega_t ~ Gamma(2, 20); ln phi_t ~ Normal

A level with one member is not sampled: with one family theta_{f,t} = mu_t (no tau), and a (family, tier) with one
task has theta_{f,k} = theta_{f,t} (no sigma); the spread of a single member is not identified.

Parameterisation (how NUTS sees it; the joint distribution above is unchanged). The previous direct form
(sample mu, then theta_tier, theta_task, u) made NUTS hit its tree-depth cap on every draw: the rows pin
c + alpha x_N + u per (model, tier), leaving a ridge along (c, alpha, u) and a funnel between omega and the
per-family (c, alpha). Now:

- m_{f,t} = the mean of family f's task laws in tier t is sampled instead of theta_{f,t}; the task laws are m plus
  Helmert contrasts (site ``task_dev``, ~Normal(0, sigma) each), and theta_{f,t} is drawn from its conditional
  given m and mu (site ``z_theta``), which nothing downstream depends on.
- For c and alpha the rows see only v_{m,t} = c + alpha x_N of m + u_{m,t} (site ``v_model``, centred on the
  data). (mu, m) for c and alpha are Gaussian given v and the scales, so they are integrated out: v has a
  multivariate normal marginal, and (mu, m) are drawn from their conditional (site ``z_law``).
- For beta, gamma, delta, mu is integrated out by sampling the families in turn, each conditioned on those before
  (sites ``m_fam0``, ``m_fam1``, ...), then mu from its conditional (site ``z_mu``). Centred where the data pin
  the coefficient, non-centred otherwise (``centred_coefs``).

Measured (bench/fit_speed.py, 900 rows): mean leapfrog steps per draw went from ~253 (the cap) to ~23, and
2 x (400 + 600) draws pass the gate (R-hat <= 1.01, ESS >= 400, no divergences).

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

from strata import law
from strata.law import TIERS

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
    deviation from the law, on the ln(-ln) scale) Gamma(2, rate 20): mode 0.05, mean 0.1, 95% below 0.24, and a
    density that vanishes at 0, because no family's models sit exactly on a power law in N. (A HalfNormal(0.3)
    let the published KR tier's omega reach ~0.003, the neck of a funnel with the model effects: every
    divergent transition on the published data sat there, and target_accept 0.99 still left one.)
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
    # Which model each row measured (index into model_names). None: a model is a (family, N) pair, which is
    # wrong when a family holds two models of one size (LLaMA-1 13B and Llama-2 13B): their deviations from
    # the law are not shared.
    model: np.ndarray | None = None
    model_names: list[str] | None = None

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
        model: Sequence[str] | None = None,
    ) -> FitData:
        """Build from per-row labels; tiers defaults to those present, in KM, KA, KR order; ``model`` names the
        model each row measured (default: one model per (family, N))."""
        tier_names = list(tiers) if tiers is not None else [t for t in TIERS if t in set(tier)]
        unknown = sorted(set(tier) - set(tier_names))
        if unknown:
            raise ValueError(f"rows have tier {unknown[0]!r}, not among the fitted tiers {tier_names}")
        task_names = sorted(set(task))
        family_names = sorted(set(family))
        model_names = sorted(set(model)) if model is not None else None
        model_idx = None if model_names is None else np.array([model_names.index(m) for m in model or ()], dtype=int)
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
            model=model_idx,
            model_names=model_names,
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
        if self.model is not None:
            mid = np.asarray(self.model)
            names = self.model_names or []
            if mid.shape != (r,) or np.any((mid < 0) | (mid >= len(names))):
                raise ValueError(f"model must be ({r},) indices into {len(names)} model names")
            for j in np.unique(mid):
                if np.unique(np.asarray(self.params)[mid == j]).size > 1:
                    raise ValueError(f"model {names[j]} has rows with different parameter counts; one model, one N")
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
    """Centred law features and the index structure of the hierarchy, built once from numpy data.

    Model-tier pairs (one model = one (family, N)) carry the model effects; family-task pairs are the task laws
    a family's data can inform; ``helmert`` (P, C) maps the C within-(family, tier) task contrasts to the P
    family-task laws' deviations from their (family, tier) mean (orthonormal columns, each orthogonal to 1).
    """

    centre: np.ndarray  # (4,) mean of [ln N, ln log2 B, ln log2 Cb, ln G] over the rows (population laws)
    constant: np.ndarray  # (4,) bool: the factor never varies (its exponent is prior-only)
    family_centre: np.ndarray  # (F, 4) centre of each family's rows: its own value where the family never varies it
    x: np.ndarray  # (R, 4) features centred per family (family_centre)
    model: np.ndarray  # (R,) index of the (model, tier) pair each row belongs to
    n_pairs: int
    n_models: int
    pair_tier: np.ndarray  # (n_pairs,) tier of each (model, tier) pair
    pair_family: np.ndarray  # (n_pairs,) family of each (model, tier) pair
    pair_x: np.ndarray  # (n_pairs,) centred ln N of each (model, tier) pair
    ftask: np.ndarray  # (R,) index of the observed (family, task) pair each row belongs to
    ftask_family: np.ndarray  # (P,)
    ftask_task: np.ndarray  # (P,)
    ftask_tier: np.ndarray  # (P,)
    helmert: np.ndarray  # (P, C)
    n_tasks_ft: np.ndarray  # (F, T) observed tasks per (family, tier); 0 where the family has none
    unobserved: np.ndarray  # (U, 2) (family, task) pairs with no rows: their laws are prior draws

    @classmethod
    def of(cls, data: FitData) -> Design:
        raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 1:]  # drop the 1s
        constant = np.ptp(raw, axis=0) == 0
        centre = np.where(constant, raw[0], raw.mean(axis=0))
        fam, tier, task = (np.asarray(a, dtype=int) for a in (data.family, data.tier, data.task))
        # A factor one family never varies (Cb in every published table: 128 for Qwen3, 512 for Llama) is
        # centred on that family's value, so its exponent leaves that family's likelihood. Centred globally, it
        # would shift all of the family's rows together, exactly as the family's intercept does: a ridge that
        # only the priors bound (R-hat 1.0106 on the published qwen3 + llama fit) and no information.
        family_centre = np.tile(centre, (len(data.family_names), 1))
        for f in range(len(data.family_names)):
            own = raw[fam == f]
            if len(own):
                family_centre[f] = np.where(np.ptp(own, axis=0) == 0, own[0], centre)
        x = raw - family_centre[fam]
        model_id = np.asarray(data.params, dtype=float) if data.model is None else np.asarray(data.model, float)
        model_keys = np.stack([fam.astype(float), model_id], axis=1)
        _, model = np.unique(model_keys, axis=0, return_inverse=True)
        model = model.ravel()
        pairs, pair = np.unique(np.stack([model, tier], axis=1), axis=0, return_inverse=True)
        pair = pair.ravel()
        n_pairs = len(pairs)
        pair_family, pair_x = np.zeros(n_pairs, int), np.zeros(n_pairs)
        pair_family[pair], pair_x[pair] = fam, x[:, 0]
        ft, ftask = np.unique(np.stack([fam, task], axis=1), axis=0, return_inverse=True)
        ftask = ftask.ravel()
        task_tier = data.task_tier
        ft_tier = task_tier[ft[:, 1]]
        n_f, n_t, n_k = len(data.family_names), len(data.tier_names), len(data.task_names)
        n_tasks_ft = np.zeros((n_f, n_t), dtype=int)
        blocks = []
        for f in range(n_f):
            for t in range(n_t):
                members = np.flatnonzero((ft[:, 0] == f) & (ft_tier == t))
                n_tasks_ft[f, t] = members.size
                if members.size > 1:
                    blocks.append((members, _helmert(members.size)))
        helmert = np.zeros((len(ft), sum(h.shape[1] for _, h in blocks)))
        col = 0
        for members, h in blocks:
            helmert[np.ix_(members, np.arange(col, col + h.shape[1]))] = h
            col += h.shape[1]
        seen = {(int(a), int(b)) for a, b in ft}
        unobserved = np.array([(f, k) for f in range(n_f) for k in range(n_k) if (f, k) not in seen], dtype=int)
        return cls(
            centre=centre,
            constant=constant,
            family_centre=family_centre,
            x=x,
            model=pair.astype(int),
            n_pairs=n_pairs,
            n_models=int(model.max()) + 1,
            pair_tier=pairs[:, 1].astype(int),
            pair_family=pair_family,
            pair_x=pair_x,
            ftask=ftask.astype(int),
            ftask_family=ft[:, 0].astype(int),
            ftask_task=ft[:, 1].astype(int),
            ftask_tier=ft_tier.astype(int),
            helmert=helmert,
            n_tasks_ft=n_tasks_ft,
            unobserved=unobserved.reshape(-1, 2),
        )


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


def _helmert(k: int) -> np.ndarray:
    """(k, k-1) orthonormal columns orthogonal to the ones vector: x -> H^T x are k-1 independent contrasts."""
    h = np.zeros((k, k - 1))
    for j in range(1, k):
        h[:j, j - 1] = 1.0 / np.sqrt(j * (j + 1))
        h[j, j - 1] = -j / np.sqrt(j * (j + 1))
    return h


def ln_a_from_centred(c: Any, slopes: Any, centre: np.ndarray) -> Any:
    """ln A on the law's scale from the centred intercept c and the exponents (last axis: alpha, beta, ...);
    centre (..., 4) broadcasts against slopes (per family: family_centre[:, None, :] for (S, F, T, d) draws)."""
    return c - (slopes * centre[..., : slopes.shape[-1]]).sum(axis=-1)


def centred_coefs(data: FitData, design: Design, d: int) -> np.ndarray:
    """(d,) 1.0 where a coefficient's family and task levels are centred, 0.0 where non-centred.

    Centred: the intercept c always, and beta where every (family, task) group has two bit-widths (the data pin
    both per group). Non-centred: alpha (pinned per family only through a handful of model sizes), gamma and
    delta, whose small scales (tau, sigma ~ 0.02) make a funnel with a centred site. Measured on the benchmark
    (300 simulated configurations, fit.bayes.synthetic_rows): centring gamma and delta too, where the grid
    varies them, gave 54 divergences per 1,200 draws instead of 0-4.
    """
    raw = law.design(data.params, data.bits, data.group_size, data.calib_samples)[:, 2]  # ln log2 B
    group = design.ftask
    varies = all(np.ptp(raw[group == g]) > 0 for g in np.unique(group))
    return np.array([1.0, 0.0, float(varies), 0.0, 0.0])[:d]


def lgamma(x: Any) -> Any:
    """ln Gamma(x) for x > 0: Stirling's series at x + 6 after six recurrence steps.

    Within 4e-10 absolute (3e-12 relative) of jax's gammaln from 1e-7 to 1e5, gradient within 1e-11, and ~5x
    cheaper with its gradient on CPU in float64: the beta-binomial's lgammas were ~70% of a NUTS step.
    """
    import jax.numpy as jnp

    y = x + 6.0
    prod = x * (x + 1.0) * (x + 2.0) * (x + 3.0) * (x + 4.0) * (x + 5.0)
    r = 1.0 / y
    r2 = r * r
    series = r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (1.0 / 1680 - r2 / 1188))))
    return (y - 0.5) * jnp.log(y) - y + 0.5 * float(np.log(2 * np.pi)) + series - jnp.log(prod)


def _beta_binomial(a: Any, b: Any, n: Any) -> Any:
    """numpyro's BetaBinomial with its log density written with ``lgamma`` (same value to 1e-9, ~10x cheaper)."""
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


def _family_chain(prior_mean: Any, prior_sd: Any, tau: Any, w: Any, cen: Any, fixed: Any) -> tuple[Any, Any]:
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
    observed: bool = True,
    correct: Any = None,
    family_laws: Any = None,
) -> None:
    """NumPyro model: the stratified law with partial pooling (population -> family -> task) on correct counts.

    Sites reported by fit.infer: ``mu`` (T, d) tier population laws, ``theta_tier`` (F, T, d) and
    ``theta_task`` (F, K, d) on the centred scale (column 0 is c). ``observed=False`` leaves the counts
    unobserved (predictive draws); ``correct`` (R,) replaces data.correct as a traced argument (one
    compilation for many data sets of the same shape); ``family_laws`` (F, T, d) fixes each family's mean task
    law per tier (simulation). Pass ``design`` to skip rebuilding it at every trace.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from jax.scipy.linalg import cho_solve

    coefs = law_coefs(law_form)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)}")
    d = len(coefs)
    design = design if design is not None else Design.of(data)
    n_tiers, n_fams = len(data.tier_names), len(data.family_names)
    prior_mean, prior_sd = priors.for_tiers(data.tier_names, d)
    n_contrasts = design.helmert.shape[1]

    # Scales. A level with one member everywhere is not sampled: tau needs two families, sigma a (family, tier)
    # with two tasks (or a task some family lacks, whose law is then a prior draw around the family's tier law).
    zeros = jnp.zeros(d)
    with numpyro.plate("coef", d, dim=-1):
        tau = numpyro.sample("tau", dist.HalfNormal(jnp.asarray(priors.tau[:d]))) if n_fams > 1 else zeros
        use_sigma = n_contrasts > 0 or len(design.unobserved) > 0
        sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.asarray(priors.sigma[:d]))) if use_sigma else zeros
    with numpyro.plate("tiers_1", n_tiers):
        omega = numpyro.sample("omega", dist.Gamma(priors.omega_shape, priors.omega_rate))
        log_phi = numpyro.sample("log_phi", dist.Normal(priors.log_phi_mean, priors.log_phi_sd))

    # m_{f,t}: family f's mean task law in tier t (the tier law theta_{f,t} plus the mean of its tasks'
    # deviations). Given mu_t it is Normal(mu_t, tau^2 + w_{f,t}), w = sigma^2 / K for K >= 2 tasks (0 for one
    # task: that task's law is the tier law).
    k_ft = jnp.asarray(design.n_tasks_ft, dtype=float)[..., None]  # (F, T, 1)
    w = jnp.where(k_ft >= 2, sigma**2 / jnp.maximum(k_ft, 1.0), 0.0)  # (F, T, d)

    # (1) c and alpha enter the likelihood only through the model effects, v_{m,t} = c + alpha x_N of the
    # family's mean task law + u_{m,t}, u ~ Normal(0, omega_t); v is what the rows pin. Given the scales,
    # (mu, m) for c and alpha and v are jointly Gaussian, so (mu, m) are integrated out: v is sampled from its
    # marginal Normal, and (mu, m) drawn afterwards from their conditional given v (standard-normal site
    # ``z_law``). This removes the funnel between omega and the per-family (c, alpha) that made NUTS crawl.
    # (2) The exponents of B, Cb, G (columns 2..) enter the rows non-linearly: their family laws are sampled in
    # turn, each conditioned on those before it (mu integrated out by a Kalman update of its Normal), then mu_t
    # from its conditional given all of them; centred where the data pin the coefficient (``centred_coefs``).
    # Simulation with fixed ``family_laws`` runs (2) for every column and draws v around the fixed c, alpha.
    cen_all = jnp.asarray(centred_coefs(data, design, d))
    if family_laws is None:
        lat = _LatentCA.of(design, n_fams, n_tiers, prior_mean, prior_sd)
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
        m_rest, mu_rest = _family_chain(prior_mean[:, 2:], prior_sd[2:], tau[2:], w[..., 2:], cen_all[2:], None)
        mu = jnp.concatenate([g[jnp.asarray(lat.mu_idx)], mu_rest], axis=-1)
        m = jnp.concatenate([g[jnp.asarray(lat.m_idx)], m_rest], axis=-1)  # (F, T, d)
    else:
        m, mu = _family_chain(prior_mean, prior_sd, tau, w, cen_all, jnp.asarray(family_laws)[..., :d])
        pf, pt = jnp.asarray(design.pair_family), jnp.asarray(design.pair_tier)
        with numpyro.plate("pairs", design.n_pairs):
            v_loc = m[pf, pt, 0] + m[pf, pt, 1] * jnp.asarray(design.pair_x)
            v_model = numpyro.sample("v_model", dist.Normal(v_loc, omega[pt]))
    mu = numpyro.deterministic("mu", mu)

    # theta_{f,t} | m_{f,t}, mu_t: prior Normal(mu, tau^2), and m | theta ~ Normal(theta, w). Reported only.
    den = tau**2 + w
    safe = jnp.where(den > 0, den, 1.0)
    frac = jnp.where(den > 0, tau**2 / safe, 1.0)
    with (
        numpyro.plate("coef_t", d, dim=-1),
        numpyro.plate("tiers_t", n_tiers, dim=-2),
        numpyro.plate("families_t", n_fams, dim=-3),
    ):
        z_theta = numpyro.sample("z_theta", dist.Normal(0.0, 1.0))
    theta_tier = numpyro.deterministic("theta_tier", mu + frac * (m - mu) + _sqrt(tau**2 * w / safe) * z_theta)

    # Task laws: the family's mean task law plus the within-(family, tier) contrasts (Helmert): task deviations
    # ~ Normal(0, sigma) about the tier law, their mean absorbed into m. Centred for c only (tasks differ mostly
    # in difficulty, which every row pins); the exponents' task deviations are non-centred: with two bit-widths
    # per family a centred beta contrast made a funnel with sigma_beta on the published data (ESS 54 of 600).
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

    # The rows: ln(-ln Acc_adj) = eta, the law of fit/law.py on centred features, with the (model, tier) level
    # v in place of c + alpha x_N (the conditional draws of c and alpha above never enter the likelihood).
    fam, tier = jnp.asarray(data.family, dtype=jnp.int32), jnp.asarray(data.tier, dtype=jnp.int32)
    x = jnp.asarray(design.x[:, : d - 1])  # (R, d-1) centred features the law uses
    row_dev = dev[jnp.asarray(design.ftask)]  # (R, d)
    slopes = m[fam, tier, 2:] + row_dev[:, 2:]
    eta = (
        v_model[jnp.asarray(design.model)] + row_dev[:, 0] + row_dev[:, 1] * x[:, 0] + (slopes * x[:, 1:]).sum(axis=-1)
    )
    acc_adj = jnp.exp(-jnp.exp(eta))
    chance = jnp.asarray(data.chance)
    p = jnp.clip(law.denormalize(acc_adj, chance, xp=jnp), P_EPS, 1.0 - P_EPS)

    n = jnp.asarray(np.asarray(data.n, dtype=int))
    if not observed:
        obs_counts = None
    elif correct is not None:
        obs_counts = correct
    else:
        obs_counts = jnp.asarray(np.asarray(data.correct, dtype=int))
    with numpyro.plate("rows", len(data)):
        if likelihood == "beta_binomial":
            phi = jnp.exp(log_phi)[tier]
            numpyro.sample("correct", _beta_binomial(p * phi, (1.0 - p) * phi, n), obs=obs_counts)
        else:
            numpyro.sample("correct", dist.Binomial(n, probs=p), obs=obs_counts)


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

    ``truth`` fixes latent sites (e.g. ``tau``, ``sigma``, ``omega``, ``log_phi``) and, under the key
    ``family_laws`` (F, T, d; centred scale, c first), each family's mean task law per tier; everything else is
    drawn from its prior. With no ``truth`` at all this is a draw from the prior (simulation-based calibration).
    """
    import jax
    from numpyro import handlers

    truth = dict(truth or {})
    family_laws = truth.pop("family_laws", None)
    design = Design.of(data)
    model = handlers.seed(handlers.condition(stratified_law, data=truth), jax.random.PRNGKey(seed))
    with jax.enable_x64(True):
        trace = handlers.trace(model).get_trace(
            data,
            design,
            law_form=law_form,
            likelihood=likelihood,
            priors=priors,
            observed=False,
            family_laws=family_laws,
        )
    sites = {
        name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] in ("sample", "deterministic")
    }
    out = FitData(**{**data.__dict__, "correct": sites["correct"].astype(int)})
    return out, sites


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
