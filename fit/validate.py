"""Held-out validation: fit on part of the data, predict the rest, score each method the same way.

Splits (as the paper validates): hold out the largest model of a family (fit 0.6B-8B, predict 14B), and across
families (fit one family, predict another); and a random share of configurations (every model in the fit, some
of its (B, G, Cb) not), which scores interpolation where the others score extrapolation.

The unit predicted is a tier observation — the mean chance-adjusted accuracy over the tier's tasks for one model and
configuration — and each method reports, per tier, the mean absolute error in accuracy points (x100 on the chance-
adjusted scale) and the share of held-out observations inside its 90% predictive interval.

Methods: the paper's OLS on the four-factor law, the (N, B) baseline law by OLS, and — when a Bayesian scorer is
passed — the NumPyro model. OLS intervals are predictive intervals on the linearized scale (coefficient and
residual variance), mapped through the law.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fit.profiles import Obs, Rows, ols_law, tier_obs
from strata.law import COEF_NAMES, TIERS, denormalize, design, normalize
from strata.profile import NutsSettings, SviSettings

LEVEL = 0.9


@dataclass
class Split:
    name: str
    train: Rows
    test: Rows
    new_family: bool = False  # the test rows come from a family the training data does not have


@dataclass
class Score:
    split: str
    method: str
    tier: str
    n: int
    mae_points: float
    coverage: float


# A scorer predicts a split's held-out tier observations: (split, tier, test obs) -> (mean, lo, hi) adjusted.
Scorer = Callable[[Split, str, Obs], tuple[np.ndarray, np.ndarray, np.ndarray]]


def largest_model_split(rows: Rows) -> Split:
    """Fit on every model but the largest, predict the largest (the paper holds out Qwen3-32B)."""
    sizes = {r.model: r.params_b for r in rows.rows}
    largest = max(sizes, key=lambda m: (sizes[m], m))
    held = {m for m, s in sizes.items() if s == sizes[largest]}
    name = f"hold out {', '.join(sorted(held))}"
    return Split(name, rows.where(lambda r: r.model not in held), rows.where(lambda r: r.model in held))


def random_config_split(rows: Rows, share: float = 0.2, seed: int = 0) -> Split:
    """Fit on the other configurations, predict a random ``share`` of them (at least one). A configuration is a
    model's (bits, group size, Cb): its calibration seeds and tasks go to the same side, so no held-out point has a
    twin in the training data that differs only by seed. Keys are sorted before the draw, so the split depends on
    the seed and the data, not on the order rows were read in."""
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    key = lambda r: (r.model, r.bits, r.group_size, r.calib_samples)  # noqa: E731
    keys = sorted({key(r) for r in rows.rows}, key=repr)
    count = max(1, round(share * len(keys)))
    held = {keys[i] for i in np.random.default_rng(seed).permutation(len(keys))[:count]}
    return Split(f"hold out a random {share:.0%} of configurations ({count} of {len(keys)}, seed {seed})",
                 rows.where(lambda r: key(r) not in held), rows.where(lambda r: key(r) in held))  # fmt: skip


def family_split(train: Rows, test: Rows, name: str) -> Split:
    return Split(name, train, test, new_family=True)


def ols_scorer(columns: tuple[str, ...]) -> Scorer:
    """The paper's procedure (four-factor columns) or the (N, B) baseline (first three columns)."""

    def score(split: Split, tier: str, test: Obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        res = ols_law(tier_obs(split.train, tier), tier, columns)
        X = design(test.params, test.bits, test.group, test.calib)
        z, z_lo, z_hi = res.predict_interval(X, LEVEL)
        to_acc = lambda v: np.exp(-np.exp(v))  # noqa: E731 - decreasing: the interval's ends swap
        return to_acc(z), to_acc(z_hi), to_acc(z_lo)

    return score


def bayes_scorer(settings: NutsSettings | SviSettings) -> Scorer:
    """The NumPyro model, fitted once per split on its training rows.

    Predictive draws of a held-out tier observation: the family's tier law as its profile has it (the law of the
    tier's tasks' mean accuracy; a new family: shifted by a family deviation drawn with tau,
    Posterior.new_family) plus one deviation per held-out model, drawn
    with the posterior's omega and shared by that model's configurations, then the measurement itself drawn
    through the likelihood (``observation_draws``).
    """
    from fit.bayes_profile import family_tier_law, fit_data
    from fit.extrapolation import extrapolation_scales
    from fit.infer import INFERENCE, Posterior
    from strata.law import LawCoef, log_neg_log_acc
    from strata.profile import ExtrapolationScale

    fits: dict[str, Posterior] = {}
    scales: dict[str, dict[str, ExtrapolationScale]] = {}

    def score(split: Split, tier: str, test: Obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if split.name not in fits:
            data = fit_data({"train": split.train})
            fits[split.name] = INFERENCE[settings.engine](data, settings)
        post = fits[split.name]
        coef = family_tier_law(post, "train", split.train, tier)  # the tier law as profiles carry it
        if split.new_family:  # shifted by a new family's deviation from the fitted one (drawn with tau)
            new, fitted = post.new_family(tier, seed=settings.seed), post.coef("train", tier=tier)
            coef = LawCoef(
                *(c + n - f for c, n, f in zip(coef.as_tuple(), new.as_tuple(), fitted.as_tuple(), strict=True))
            )
        draws = LawCoef(*(np.asarray(c)[:, None] for c in coef.as_tuple()))
        z = np.asarray(log_neg_log_acc(draws, test.params[None], test.bits[None], test.group[None], test.calib[None]))
        omega = post.hyper["omega"][:, post.tier_names.index(tier)]
        models = sorted(set(test.model))
        rng = np.random.default_rng(settings.seed)
        eps = rng.standard_normal((z.shape[0], len(models)))
        z = z + omega[:, None] * eps[:, [models.index(m) for m in test.model]]
        # past the training sizes: widened as the advisor widens, by the scale measured on the training rows
        if split.name not in scales:
            scales[split.name] = extrapolation_scales(split.train, list(TIERS))
        scale = scales[split.name].get(tier)
        if scale is not None:
            sizes = [r.params_b for r in split.train.rows]
            fitted_range = (min(sizes), max(sizes))
            sd = np.array([scale.sd(float(n) / 1e9, fitted_range) for n in test.params])
            far = rng.standard_normal((z.shape[0], len(models)))[:, [models.index(m) for m in test.model]]
            z = z + sd[None, :] * far
        y = np.exp(-np.exp(z))
        # what is measured is a count of correct items, not the law's accuracy: draw it through the likelihood
        beta_binomial = post.likelihood == "beta_binomial"
        phi = post.hyper["phi"][:, post.tier_names.index(tier)] if beta_binomial else None
        y = observation_draws(y, test, phi, rng)
        lo, hi = np.quantile(y, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
        return y.mean(axis=0), lo, hi

    return score


def observation_draws(acc_adj: np.ndarray, test: Obs, phi: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Posterior predictive draws of measured tier observations from draws (S, J) of their chance-adjusted accuracy.

    Each observation averages ``test.rows`` stored rows (tasks x calibration seeds) of ``test.n / test.rows`` items
    each; each row's count is drawn as the fit's likelihood has it, BetaBinomial(n, p phi, (1 - p) phi) with p the
    raw accuracy (phi None: Binomial), so the interval carries a configuration's scatter about the law and the items'
    noise, as the OLS interval carries its residual variance. A tier's tasks share the mean chance (exact for one
    task per tier, as the zoo's; a few points of chance apart elsewhere, which moves only the item noise)."""
    from fit.bayes import P_EPS

    chance, rows = test.chance, test.rows
    per_row = np.maximum(np.rint(test.n / rows), 1).astype(int)
    p = np.clip(denormalize(acc_adj, chance), P_EPS, 1.0 - P_EPS)  # as the likelihood clips it
    total = np.zeros_like(p)
    for r in range(int(rows.max())):
        q = p if phi is None else rng.beta(p * phi[:, None], (1.0 - p) * phi[:, None])
        total += np.where(r < rows, normalize(rng.binomial(per_row, q) / per_row, chance), 0.0)
    return total / rows


METHODS: dict[str, Scorer] = {"OLS (paper)": ols_scorer(COEF_NAMES), "OLS (N, B) baseline": ols_scorer(COEF_NAMES[:3])}


def evaluate(split: Split, methods: dict[str, Scorer]) -> list[Score]:
    scores = []
    for tier in TIERS:
        test = tier_obs(split.test, tier)
        if len(test) == 0 or len(tier_obs(split.train, tier)) == 0:
            continue
        for name, scorer in methods.items():
            mean, lo, hi = scorer(split, tier, test)
            inside = (test.y_adj >= lo) & (test.y_adj <= hi)
            scores.append(
                Score(
                    split=split.name,
                    method=name,
                    tier=tier,
                    n=len(test),
                    mae_points=float(100 * np.mean(np.abs(mean - test.y_adj))),
                    coverage=float(np.mean(inside)),
                )
            )
    return scores


def markdown_table(scores: list[Score]) -> str:
    lines = ["| split | tier | method | n | MAE (points) | 90% coverage |", "|---|---|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.split} | {s.tier} | {s.method} | {s.n} | {s.mae_points:.2f} | {s.coverage:.2f} |")
    return "\n".join(lines)
