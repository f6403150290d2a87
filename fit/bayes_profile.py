"""From stored rows to a Bayesian fit and back to profiles: the bridge between `fit.profiles` and `fit.bayes`.

Each preset's rows form one family of the hierarchical model (its name is the preset's), so fitting several
presets together lets their tier laws share the population prior. A profile then carries, per tier and per task,
thinned posterior draws of that family's law (a tier's: the law of its tasks' mean accuracy, ``tier_mean_law``)
plus ``omega`` (the sd of a new model's deviation from the law), the posterior means as point coefficients, and
fit metrics computed like OLS's for comparison. The (N, B) baseline and the 16-bit law stay OLS fits: they are
references, not what the advisor decides on.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from fit.data import FitData
from fit.infer import Posterior, Thresholds
from fit.ols import FitError
from fit.profiles import (
    FitSpec,
    Obs,
    Rows,
    _fit,
    assemble,
    ols_task_law,
    task_obs,
    tier_law_members,
    tier_obs,
    unquantized_tier_law,
)
from strata.law import COEF_NAMES, TIERS, LawCoef, design, four_factor, linearize
from strata.profile import Coef, FitDiagnostics, LawFit, NewFamily, NutsSettings, Profile, SviSettings, TaskLaw

PROFILE_DRAWS = 200


def fit_data(parts: dict[str, Rows]) -> FitData:
    """One FitData from several presets' rows (family = preset name); rows in no tier are left out."""
    cols: dict[str, list] = {k: [] for k in ("params", "bits", "group_size", "calib_samples", "correct", "n",
                                             "chance", "task", "tier", "family", "model")}  # fmt: skip
    for family, rows in sorted(parts.items()):  # one order: `qwen3 --joint llama` and `llama --joint qwen3` fit alike
        obs = task_obs(rows, lambda r: r.tier is not None)
        placed = [r for r in rows.rows if r.tier is not None]
        if not placed:
            continue
        n = np.array([r.n_items or 0 for r in placed])
        if np.any(n <= 0):
            bad = next(r for r in placed if not r.n_items)
            raise FitError(f"task {bad.task} has no item count: add `items:` to the tier map for a count likelihood")
        acc = np.array([r.accuracy for r in placed], float)
        correct = np.array(
            [r.correct if r.correct is not None else round(a * k) for r, a, k in zip(placed, acc, n, strict=True)]
        )
        cols["params"] += list(obs.params)
        cols["bits"] += list(obs.bits)
        cols["group_size"] += list(obs.group)
        cols["calib_samples"] += list(obs.calib)
        cols["correct"] += list(correct)
        cols["n"] += list(n)
        cols["chance"] += [r.chance or 0.0 for r in placed]
        cols["task"] += [r.task for r in placed]
        cols["tier"] += [r.tier for r in placed]
        cols["family"] += [family] * len(placed)
        cols["model"] += [r.model for r in placed]
    if not cols["task"]:
        raise FitError("no rows in any tier to fit")
    return FitData.from_records(**cols)


# Where a tier law summarises its tasks: the advisor's domain (bits 3-8, common group sizes and Cb) over the
# family's own model sizes.
PROJECTION_BITS = (3.0, 4.0, 5.0, 6.0, 8.0)
PROJECTION_GROUPS = (32.0, 64.0, 128.0, 256.0, 1024.0)
PROJECTION_CALIB = (32.0, 128.0, 512.0, 1024.0)


def tier_mean_law(task_laws: list[LawCoef], params: np.ndarray) -> LawCoef:
    """Per posterior draw, the tier law that best reproduces the mean of the tier's task laws.

    The advisor's targets are tier observations — the mean chance-adjusted accuracy over the tier's tasks — and
    the model fits each task's law. Averaging task laws' coefficients (the hierarchy's tier law) is not the law of
    their average accuracy (on the published Qwen3 KR tier, ARC-Challenge and WinoGrande, it missed the tier means
    by far more than the paper's OLS does). So per draw, the task laws' mean accuracy is computed on a grid
    (the family's size range x bits 3-8 x group sizes x Cb) and the four-factor law is fitted to it by least
    squares on ln(-ln Acc_adj): one law per draw, its spread the posterior's.
    """
    sizes = np.geomspace(float(np.min(params)), float(np.max(params)), 6)
    grid = np.array(np.meshgrid(sizes, PROJECTION_BITS, PROJECTION_GROUPS, PROJECTION_CALIB, indexing="ij"))
    n, b, g, c = (a.ravel() for a in grid)
    acc = np.mean(
        [four_factor(LawCoef(*(np.asarray(v)[:, None] for v in k.as_tuple())), n, b, g, c) for k in task_laws], axis=0
    )  # (S, grid)
    z = np.log(-np.log(np.clip(acc, 1e-12, 1 - 1e-12)))
    coef = z @ np.linalg.pinv(design(n, b, g, c)).T  # (S, 5): ln_a, alpha, beta, gamma, delta
    return LawCoef(*coef.T)


def family_tier_law(post: Posterior, family: str, rows: Rows, tier: str) -> LawCoef:
    """A family's tier law as profiles carry it: tier_mean_law over the tier's tasks in the family's rows."""
    own = tier_law_members(rows, tier)
    return tier_mean_law([post.coef(family, task=k) for k in own], tier_obs(rows, tier).params)


def _thin(a: np.ndarray, k: int = PROFILE_DRAWS) -> np.ndarray:
    idx = np.linspace(0, a.shape[0] - 1, min(k, a.shape[0])).round().astype(int)
    return a[idx]


def _tier_omega(post: Posterior, omega: np.ndarray | None, tier: str | None) -> np.ndarray | None:
    return None if omega is None or tier is None else omega[:, post.tier_names.index(tier)]


def _law_fit(coef: LawCoef, omega: np.ndarray | None, obs: Obs) -> LawFit:
    """Posterior draws of one law as a LawFit, with OLS-comparable metrics of its posterior-mean law."""
    arrays = {k: np.asarray(v, float) for k, v in zip(COEF_NAMES, coef.as_tuple(), strict=True)}
    point = LawCoef(*(float(arrays[k].mean()) for k in COEF_NAMES))
    draws = {k: [round(float(x), 6) for x in _thin(v)] for k, v in arrays.items()}
    if omega is not None:
        draws["omega"] = [round(float(x), 6) for x in _thin(np.asarray(omega, float))]
    r2 = adj = mae = None
    clipped = 0
    if len(obs):
        z, mask = linearize(obs.y_adj, obs.n)
        zhat = np.log(-np.log(four_factor(point, obs.params, obs.bits, obs.group, obs.calib)))
        ss_res, ss_tot = float(((z - zhat) ** 2).sum()), float(((z - z.mean()) ** 2).sum())
        if ss_tot > 0:
            r2 = 1 - ss_res / ss_tot
            dof = len(obs) - len(COEF_NAMES)
            adj = 1 - (1 - r2) * (len(obs) - 1) / dof if dof > 0 else None
        pred = four_factor(point, obs.params, obs.bits, obs.group, obs.calib)
        mae = float(np.mean(np.abs(pred - obs.y_adj)))
        clipped = int(mask.sum())
    return LawFit(
        coef=Coef(**{k: float(getattr(point, k)) for k in COEF_NAMES}),
        se={k: round(float(v.std()), 6) for k, v in arrays.items()},
        draws=draws,
        n_rows=len(obs),
        r2=None if r2 is None else round(r2, 6),
        adj_r2=None if adj is None else round(adj, 6),
        mae_adj=None if mae is None else round(mae, 6),
        n_clipped=clipped,
    )


def diagnostics_of(post: Posterior, thresholds: Thresholds, *, forced: bool) -> FitDiagnostics:
    d = post.diagnostics
    return FitDiagnostics(
        method="svi" if post.method == "svi" else "nuts",
        r_hat_max={k: round(float(v), 4) for k, v in d.r_hat.items()},
        ess_min={k: round(float(v), 1) for k, v in d.ess.items()},
        divergences=int(d.divergences),
        num_chains=int(d.num_chains),
        num_draws=int(d.num_draws),
        svi_converged=None if d.svi is None else bool(d.svi.converged),
        problems=d.problems(thresholds),
        forced=forced,
        seconds=round(float(post.seconds), 2),
    )


def bayes_profile(
    post: Posterior,
    family: str,
    quant: Rows,
    ref: Rows,
    spec: FitSpec,
    command: str,
    diag: FitDiagnostics,
    settings: NutsSettings | SviSettings,
) -> Profile:
    """The profile of one family of a joint posterior."""
    omega = post.hyper.get("omega")
    tiers, baseline, unquantized, tasks = {}, {}, {}, {}
    for t in TIERS:
        if t not in post.tier_names or family not in post.family_names:
            continue
        obs = tier_obs(quant, t)
        if len(obs) == 0:
            continue
        tiers[t] = _law_fit(family_tier_law(post, family, quant, t), _tier_omega(post, omega, t), obs)
        baseline[t] = _fit(obs, t, COEF_NAMES[:3], draws=False)
        unq = unquantized_tier_law(ref, t, tier_law_members(quant, t))
        if unq is not None:
            unquantized[t] = unq
    for k, task in enumerate(post.task_names):
        obs = task_obs(quant, lambda r, task=task: r.task == task)  # type: ignore[misc]
        if len(obs) == 0:
            continue
        tier = post.tier_names[int(post.task_tier[k])]
        law = _law_fit(post.coef(family, task=task), _tier_omega(post, omega, tier), obs)
        chance = next(r.chance for r in quant.rows if r.task == task) or 0.0
        tasks[task] = TaskLaw.model_validate({**law.model_dump(), "tier": tier, "chance": chance})
    for task in sorted({r.task for r in quant.rows if r.tier is None}):  # placed in no tier: not in the model
        law_or_why = ols_task_law(quant, task, spec)  # its own OLS law, as in an OLS profile
        if isinstance(law_or_why, TaskLaw):
            tasks[task] = law_or_why
    if not tiers:
        raise FitError(f"the posterior has no tier law for {family}")
    general = _fit(tier_obs(quant, None), "general", COEF_NAMES, draws=False)
    laws = {"tiers": tiers, "general": general, "baseline": baseline, "unquantized": unquantized, "tasks": tasks}
    # A family no profile was fitted on: the population law plus a family deviation drawn with tau (the spread
    # between the fitted families), so the advisor answers for it honestly wide instead of refusing it.
    empty = tier_obs(Rows([], []), None)
    new = {
        t: _law_fit(post.new_family(t, seed=settings.seed), _tier_omega(post, omega, t), empty)
        for t in post.tier_names
        if t in tiers
    }
    new_tasks = {
        k: TaskLaw.model_validate(
            {**_law_fit(post.new_family_task(k, seed=settings.seed), _tier_omega(post, omega, law.tier), empty)
             .model_dump(), "tier": law.tier, "chance": law.chance}
        )
        for k, law in tasks.items()
        if k in post.task_names and law.tier in new
    }  # fmt: skip
    extra = {
        "likelihood": post.likelihood,
        "diagnostics": diag,
        "new_family": NewFamily(families=list(post.family_names), tiers=new, tasks=new_tasks),
    }
    return assemble(spec, quant, Counter(quant.excluded), command, settings=settings, laws=laws, ref=ref, **extra)
