"""From stored measurements to a profile: select rows, fit every law, write validated JSON.

A profile is fitted on one quantization method (GPTQ for the shipped ones: RTN and AWQ rows are excluded, and
``--method`` makes a separate profile for them) and one set of model families. Rows left out are counted by
reason in the profile. 2-bit rows are excluded by default, as in the paper: 2 bits is a collapse (a phase
transition) that the smooth law does not describe; so is any configuration above it that collapsed (Meta-Llama-3-8B
at 3 bits per-channel: the collapse model's definition, ``fit.collapse``). Those belong to the collapse model,
which every prediction mixes in, not to the smooth law.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from fit.ols import FitError, OlsResult, identifiable, ols_fit, paper_exponent, sample_coefficients
from strata.law import (
    COEF_NAMES,
    NOMINAL_CALIB_SAMPLES,
    TIERS,
    LawCoef,
    design,
    effective_group_size,
    four_factor,
    linearize,
    normalize,
)
from strata.metric import ACCURACY_METRICS, law_task, metric_base, tier_members
from strata.profile import (
    PROFILE_SCHEMA_VERSION,
    Coef,
    DataSummary,
    DropSpread,
    ExtrapolationScale,
    FitSettings,
    LawFit,
    OlsSettings,
    Profile,
    SeedSpread,
    TaskLaw,
)
from strata.rows import ResultRow

BITS_SUPPORTED = (3.0, 8.0)  # the paper's fitting domain: 2 bits excluded (collapse), 16 is the unquantized law
OLS_DRAWS = 200


@dataclass(frozen=True)
class FitSpec:
    """What a profile is fitted on."""

    name: str
    description: str
    families: tuple[str, ...]
    applies_to: tuple[str, ...] = ()  # default: the fitted families
    method: str = "GPTQ"
    stages: tuple[str, ...] = ()  # empty: all stages
    min_bits: float = BITS_SUPPORTED[0]
    include_suspect: bool = False
    min_task_rows: int = 8


@dataclass
class Rows:
    """Selected measurements, one per (model, configuration, task)."""

    rows: list[ResultRow]
    hidden: list[int]
    excluded: Counter[str] = field(default_factory=Counter)

    def where(self, keep: Callable[[ResultRow], bool]) -> Rows:
        """The rows ``keep`` accepts, each with its input width (a split's side; nothing excluded)."""
        pick = [(r, h) for r, h in zip(self.rows, self.hidden, strict=True) if keep(r)]
        return Rows([r for r, _ in pick], [h for _, h in pick])


@dataclass
class Obs:
    """Observations for one law, as arrays: factors, chance-adjusted accuracy, items behind it, model ids."""

    params: np.ndarray
    bits: np.ndarray
    group: np.ndarray  # effective: per-channel already resolved to the input width
    calib: np.ndarray
    y_adj: np.ndarray
    n: np.ndarray
    model: list[str]
    chance: np.ndarray  # the mean chance of the rows behind each observation
    rows: np.ndarray  # how many stored rows (tasks x calibration seeds) each observation averages

    def __len__(self) -> int:
        return len(self.model)


def task_obs(data: Rows, keep: Callable[[ResultRow], bool]) -> Obs:
    """One observation per stored row (per task)."""
    idx = [i for i, r in enumerate(data.rows) if keep(r)]
    rows = [data.rows[i] for i in idx]
    group = np.array([r.group_size if r.group_size is not None else -1 for r in rows], float)
    chance = np.array([r.chance or 0.0 for r in rows], float)
    return Obs(
        params=np.array([r.params_b * 1e9 for r in rows]),
        bits=np.array([r.bits for r in rows], float),
        group=effective_group_size(group, np.array([data.hidden[i] for i in idx], float)),
        calib=np.array([r.calib_samples or 2 for r in rows], float),  # Cb = 2 -> ln log2 Cb = 0 (16-bit rows)
        y_adj=normalize(np.array([r.accuracy for r in rows], float), chance),
        n=np.array([r.n_items or 1000 for r in rows], float),
        model=[r.model for r in rows],
        chance=chance,
        rows=np.ones(len(rows)),
    )


def tier_obs(data: Rows, tier: str | None) -> Obs:
    """One observation per (model, configuration): the mean chance-adjusted accuracy over the tier's tasks
    (tier None: over the tasks of every tier, the paper's general law).

    This is the paper's procedure (a tier's accuracy is the average over its benchmarks); each task counts once,
    whatever its size, and the items behind the mean are summed.
    """

    members = {t: set(tier_members({r.task: r.tier for r in data.rows}, t)) for t in TIERS}

    def keep(r: ResultRow) -> bool:  # each task once: on acc where it was also measured on another metric
        return r.tier is not None and r.task in members[r.tier] and (tier is None or r.tier == tier)

    per_task = task_obs(data, keep)
    keys = [(r.source, r.model, r.stage, r.method, r.bits, r.group_size, r.calib_samples) for r in data.rows if keep(r)]
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    first = [ix[0] for ix in groups.values()]
    return Obs(
        params=per_task.params[first],
        bits=per_task.bits[first],
        group=per_task.group[first],
        calib=per_task.calib[first],
        y_adj=np.array([per_task.y_adj[ix].mean() for ix in groups.values()]),
        n=np.array([per_task.n[ix].sum() for ix in groups.values()]),
        model=[per_task.model[i] for i in first],
        chance=np.array([per_task.chance[ix].mean() for ix in groups.values()]),
        rows=np.array([len(ix) for ix in groups.values()], float),
    )


def select(
    rows: Iterable[ResultRow], spec: FitSpec, hidden_of: Callable[[ResultRow], int | None], *, quantized: bool
) -> Rows:
    """Rows of the spec's families and stages: quantized by spec.method, or the 16-bit references. A row on another
    accuracy metric than acc is kept under its law's name (``strata.metric.law_task``: ``arc_challenge:acc_norm``)."""
    from fit.collapse import configurations

    rows = list(rows)
    fams = {f.lower() for f in spec.families}
    collapsed = {c.key for c in configurations(rows, hidden_of, spec.method) if c.collapsed} if quantized else set()
    unstated = _unstated_calibration(rows, spec) if quantized else set()
    keep: list[ResultRow] = []
    hidden: list[int] = []
    excluded: Counter[str] = Counter()
    for r in rows:
        if r.family.lower() not in fams or (spec.stages and r.stage not in spec.stages):
            continue
        is_ref = r.method.upper() in ("FP16", "BF16") or r.bits >= 16
        if is_ref == quantized:
            continue
        if quantized and r.method.upper() != spec.method.upper():
            excluded[f"method {r.method} (this profile is {spec.method})"] += 1
            continue
        key = (r.source, r.model, r.stage, r.bits, r.group_size, r.calib_samples)  # as the collapse model keyed it
        if r.calib_samples is None and r.family in unstated:
            r = r.model_copy(update={"calib_samples": NOMINAL_CALIB_SAMPLES})
        reason = _exclusion(r, spec, quantized)
        if reason is None and key in collapsed:
            reason = "a collapsed configuration (median retained accuracy below half: the collapse model's)"
        if reason is None and quantized and r.group_size == -1 and hidden_of(r) is None:
            reason = "per-channel row of a model with unknown hidden size"
        if reason:
            excluded[reason] += 1
            continue
        keep.append(r if metric_base(r.metric) == "acc" else r.model_copy(update={"task": law_task(r.task, r.metric)}))
        hidden.append(hidden_of(r) or 1)  # only per-channel rows use it, and those need a known width
    return Rows(keep, hidden, excluded)


def _unstated_calibration(rows: list[ResultRow], spec: FitSpec) -> set[str]:
    """Families whose quantized rows of this method come from one source and none states a calibration-set size (the
    Qwen2 docs): one recipe, so one Cb, which the fit takes at strata.law.NOMINAL_CALIB_SAMPLES. The family-centred
    design leaves a factor constant within a family out of its likelihood, so no exponent depends on the value.
    A family where some rows state Cb keeps the others out: there the value would matter."""
    sources: dict[str, set[str]] = defaultdict(set)
    stated: set[str] = set()
    for r in rows:
        if r.method.upper() == spec.method.upper() and r.bits < 16:
            sources[r.family].add(r.source)
            if r.calib_samples is not None:
                stated.add(r.family)
    return {f for f, s in sources.items() if len(s) == 1 and f not in stated}


def _exclusion(r: ResultRow, spec: FitSpec, quantized: bool) -> str | None:
    if metric_base(r.metric) not in ACCURACY_METRICS or r.accuracy is None:
        return "not an accuracy over items (perplexity, a summary average, mc2, a leaderboard-normalized score)"
    if r.tier is None and r.chance is None:
        return f"task {r.task} is not in the tier map"
    if r.suspect and not spec.include_suspect:
        return "flagged SUSPECT in the source"
    if quantized and r.bits < spec.min_bits:
        return f"{r.bits:g}-bit (below the law's {spec.min_bits:g}-bit floor: collapse regime)"
    if quantized and r.calib_samples is None:
        return "no calibration-set size"
    if quantized and r.group_size is None:
        return "no group size stated in the source"
    return None


def _law_fit(res: OlsResult, y_adj: np.ndarray, pred: np.ndarray, n_clipped: int, draws: bool) -> LawFit:
    coef = dict(zip(COEF_NAMES, (float(v) for v in res.coef), strict=True))
    d = None
    if draws:
        s = sample_coefficients(res, OLS_DRAWS)
        d = {k: [round(float(v), 6) for v in s[:, i]] for i, k in enumerate(COEF_NAMES)}
        # A new model's deviation from the law, as a Bayesian profile's omega: the residual sd, so that the law
        # alone gives OLS's prediction interval for a model, not the confidence interval of the law's mean.
        d["omega"] = [round(float(np.sqrt(res.sigma2)), 6)] * OLS_DRAWS
    return LawFit(
        coef=Coef(**coef),
        fixed=res.fixed,
        se={k: round(v, 6) for k, v in res.se.items()},
        draws=d,
        n_rows=res.n,
        r2=round(res.r2, 6),
        adj_r2=round(res.adj_r2, 6),
        mae_adj=round(float(np.mean(np.abs(pred - y_adj))), 6),
        n_clipped=n_clipped,
    )


def fit_four_factor(obs: Obs, tier: str, *, draws: bool = True) -> LawFit:
    """The four-factor law by OLS; exponents the data cannot identify are pinned to the paper's values."""
    return _fit(obs, tier, COEF_NAMES, draws=draws)


def ols_law(obs: Obs, tier: str, columns: tuple[str, ...] = COEF_NAMES) -> OlsResult:
    """OLS of a law with the first ``len(columns)`` factors, embedded in the full five-coefficient law."""
    k = len(columns)
    X = design(obs.params, obs.bits, obs.group, obs.calib)[:, :k]
    z, _ = linearize(obs.y_adj, obs.n)
    free = identifiable(X, obs.model, columns)
    fixed = {c: paper_exponent(tier, c) for c in columns[1:] if c not in free}
    res = ols_fit(X, z, fixed, columns)
    if k < len(COEF_NAMES):  # embed in the full law: absent factors have exponent 0
        res.coef = np.concatenate([res.coef, np.zeros(len(COEF_NAMES) - k)])
        res.cov = np.pad(res.cov, (0, len(COEF_NAMES) - k))
    return res


def _fit(obs: Obs, tier: str, columns: tuple[str, ...], *, draws: bool) -> LawFit:
    """OLS of a law with the first ``len(columns)`` factors: all four, the (N, B) baseline, or the 16-bit law."""
    res = ols_law(obs, tier, columns)
    _, clipped = linearize(obs.y_adj, obs.n)
    pred = four_factor(LawCoef(*res.coef), obs.params, obs.bits, obs.group, obs.calib)
    return _law_fit(res, obs.y_adj, pred, int(clipped.sum()), draws)


def unquantized_tier_law(ref: Rows, tier: str, members: list[str]) -> LawFit | None:
    """The 16-bit law of a tier: the law of its member tasks' mean accuracy in N, or None when the 16-bit rows
    cannot carry one (fewer than two model sizes, or no more rows than coefficients).

    Fitted as z(model, task) = c_task + alpha ln N by OLS, one level per task: models measured on different task
    sets (Meta-Llama-3-8B on ARC-Challenge and WinoGrande, the Llama-3.1 instruct models on WinoGrande and GSM8K)
    inform alpha and each task's level without mixing task sets into one mean, which a law of tier means would
    (its drop against the quantized tier law, the mean over all member tasks, was then that mix). The tier law is
    the law of the members' mean accuracy, fitted per coefficient draw on a grid of N, as the quantized tier law
    of a Bayesian profile is (``fit.bayes_profile.tier_mean_law``); a member with no 16-bit row is left out."""
    obs = task_obs(ref, lambda r: r.tier == tier and r.task in members)
    names = sorted({r.task for r in ref.rows if r.tier == tier and r.task in members})
    task_of = [r.task for r in ref.rows if r.tier == tier and r.task in members]
    k = len(names) + 1
    if np.unique(obs.params).size < 2 or len(obs) <= k:
        return None
    lnn = np.log(obs.params)
    X = np.column_stack([*(np.array([t == n for t in task_of], float) for n in names), lnn])
    if np.linalg.matrix_rank(X) < k:
        return None
    z, clipped = linearize(obs.y_adj, obs.n)
    beta, *_ = np.linalg.lstsq(X, z, rcond=None)
    resid = z - X @ beta
    cov = float(resid @ resid) / (len(z) - k) * np.linalg.inv(X.T @ X)
    draws = beta + np.random.default_rng(0).standard_normal((OLS_DRAWS, k)) @ np.linalg.cholesky(cov).T
    grid = np.geomspace(float(obs.params.min()), float(obs.params.max()), 6)
    acc = np.exp(-np.exp(draws[:, :-1, None] + draws[:, -1:, None] * np.log(grid)[None, None, :])).mean(axis=1)
    zg = np.log(-np.log(np.clip(acc, 1e-12, 1 - 1e-12)))  # (S, grid): the members' mean, per draw
    G = np.column_stack([np.ones_like(grid), np.log(grid)])
    coef = zg @ np.linalg.pinv(G).T  # (S, 2): ln_a, alpha of the law of the mean
    point = np.exp(-np.exp(beta[:-1, None] + beta[-1] * np.log(grid)[None, :])).mean(axis=0)
    ln_a, alpha = np.linalg.lstsq(G, np.log(-np.log(np.clip(point, 1e-12, 1 - 1e-12))), rcond=None)[0]
    ss_tot = float(((z - z.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / ss_tot if ss_tot > 0 else float("nan")
    adj = 1 - (1 - r2) * (len(z) - 1) / (len(z) - k) if len(z) > k else float("nan")
    pred = np.exp(-np.exp(X @ beta))
    zero = {c: 0.0 for c in COEF_NAMES[2:]}
    return LawFit(
        coef=Coef(ln_a=float(ln_a), alpha=float(alpha), **zero),
        fixed={},
        se={"ln_a": round(float(coef[:, 0].std()), 6), "alpha": round(float(coef[:, 1].std()), 6)},
        draws={
            "ln_a": [round(float(v), 6) for v in coef[:, 0]],
            "alpha": [round(float(v), 6) for v in coef[:, 1]],
            **{c: [0.0] * OLS_DRAWS for c in COEF_NAMES[2:]},
        },
        n_rows=len(z),
        r2=round(r2, 6),
        adj_r2=round(adj, 6),
        mae_adj=round(float(np.mean(np.abs(pred - obs.y_adj))), 6),
        n_clipped=int(clipped.sum()),
    )


def tier_law_members(rows: Rows, tier: str) -> list[str]:
    """The tasks a profile's tier law is over: each once (``strata.metric.tier_members``)."""
    return tier_members({r.task: r.tier for r in rows.rows}, tier)


def _varies(obs: Obs) -> bool:
    """Whether the linearized observations differ at all (a constant has no slope to fit, and R² is undefined)."""
    z, _ = linearize(obs.y_adj, obs.n)
    return bool(np.ptp(z) > 0)


def build_profile(quant: Rows, ref: Rows, spec: FitSpec, command: str) -> Profile:
    """Fit every law of a profile (per tier, general, per task, baseline, 16-bit) and assemble it."""
    if not quant.rows:
        raise FitError(
            f"no {spec.method} accuracy rows for families {', '.join(spec.families)}; check --family/--method"
        )
    if len({r.params_b for r in quant.rows}) < 2:
        raise FitError("all rows come from one model size: N is not identifiable; add another model size")
    tiers, baseline, unquantized, tasks = {}, {}, {}, {}
    excluded = Counter(quant.excluded)
    for t in TIERS:
        obs = tier_obs(quant, t)
        if len(obs) == 0:
            continue  # the profile then has no law for this tier, and the advisor says so
        if not _varies(obs):
            raise FitError(
                f"tier {t}: every one of its {len(obs)} observations is the same after the half-item correction "
                "(e.g. all at 100%), so the law has nothing to fit; evaluate more items, or configurations that "
                "cost accuracy (fewer bits), or leave the tier's tasks out"
            )
        tiers[t] = fit_four_factor(obs, t)
        baseline[t] = _fit(obs, t, COEF_NAMES[:3], draws=False)
        unq = unquantized_tier_law(ref, t, tier_law_members(quant, t))
        if unq is not None:
            unquantized[t] = unq  # else: no 16-bit law, the advisor says so
    general = fit_four_factor(tier_obs(quant, None), "general", draws=False)
    for task in sorted({r.task for r in quant.rows}):
        law_or_why = ols_task_law(quant, task, spec)
        if isinstance(law_or_why, TaskLaw):
            tasks[task] = law_or_why
        else:
            excluded[law_or_why[0]] += law_or_why[1]
    laws = {"tiers": tiers, "general": general, "baseline": baseline, "unquantized": unquantized, "tasks": tasks}
    return assemble(spec, quant, excluded, command, settings=OlsSettings(), laws=laws, ref=ref)


def ols_task_law(quant: Rows, task: str, spec: FitSpec) -> TaskLaw | tuple[str, int]:
    """One task's own four-factor law by OLS, or (why not, rows left out) when its rows cannot carry one."""
    obs = task_obs(quant, lambda r: r.task == task)
    row = next(r for r in quant.rows if r.task == task)
    if len(obs) < spec.min_task_rows:
        return f"task {task}: fewer than {spec.min_task_rows} rows for a per-task law", len(obs)
    if not _varies(obs):
        return f"task {task}: the same score everywhere, no per-task law", len(obs)
    law = fit_four_factor(obs, row.tier or "general")  # an unplaced task still gets its own law
    return TaskLaw.model_validate({**law.model_dump(), "tier": row.tier, "chance": row.chance or 0.0})


def assemble(
    spec: FitSpec,
    quant: Rows,
    excluded: Counter[str],
    command: str,
    *,
    settings: FitSettings,
    laws: dict[str, Any],
    ref: Rows | None = None,
    **extra: Any,
) -> Profile:
    """A profile from its fitted laws (tiers, general, baseline, unquantized, tasks), what it was fitted on and
    the engine's settings that fitted it; with the 16-bit rows ``ref``, how far the models' drops stray from the
    laws' (``fit.drop_spread``)."""
    laws = {**laws, "tasks": _with_items(laws["tasks"], quant.rows + (ref.rows if ref is not None else []))}
    return Profile(
        schema_version=PROFILE_SCHEMA_VERSION,
        name=spec.name,
        description=spec.description,
        families=list(spec.families),
        applies_to=list(spec.applies_to or spec.families),
        method=spec.method,
        engine=settings.engine,
        settings=settings,
        bits_supported=BITS_SUPPORTED,
        **laws,
        data=_summary(quant, spec, excluded),
        extrapolation=_extrapolation(quant, list(laws["tiers"])) or None,
        seed_spread=seed_spread(quant) or None,
        drop_spread=_drop_spread(quant, ref, laws) or None,
        command=command,
        strata_version=_version(),
        **extra,
    )


def _with_items(tasks: dict[str, TaskLaw], rows: list[ResultRow]) -> dict[str, TaskLaw]:
    """Each task law with the most items any of its rows was scored on (``TaskLaw.items``)."""
    most: dict[str, int] = {}
    for r in rows:
        if r.n_items:
            key = law_task(r.task, r.metric)
            most[key] = max(most.get(key, 0), int(r.n_items))
    return {k: law.model_copy(update={"items": most.get(k, law.items)}) for k, law in tasks.items()}


def _extrapolation(quant: Rows, tiers: list[str]) -> dict[str, ExtrapolationScale]:
    from fit.extrapolation import extrapolation_scales  # it fits laws with this module's OLS: imported late

    return extrapolation_scales(quant, tiers)


def _drop_spread(quant: Rows, ref: Rows | None, laws: dict[str, Any]) -> dict[str, DropSpread]:
    from fit.drop_spread import drop_spreads  # it reads this module's Rows: imported late

    return {} if ref is None else drop_spreads(quant, ref, laws["tiers"], laws["unquantized"])


def seed_spread(data: Rows) -> dict[str, SeedSpread]:
    """Per tier and per task: the pooled sd, between calibration seeds, of the chance-adjusted mean at one
    configuration (model, B, G, Cb), by bit-width, over the configurations measured under two or more seeds.

    A tier's value at a seed is the mean over its tasks measured at that seed, as ``tier_obs`` averages them;
    pooling averages each configuration's sample variance (ddof 1), so configurations count equally."""
    values: dict[tuple[Any, ...], dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in data.rows:
        if r.calib_seed is None or r.accuracy is None or r.tier is None:
            continue
        adj = float(normalize(r.accuracy, r.chance or 0.0))
        config = (r.model, r.bits, r.group_size, r.calib_samples)
        for name in (r.tier, r.task):
            values[(name, *config)][r.calib_seed].append(adj)
    variances: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (name, _model, bits, *_), by_seed in values.items():
        if len(by_seed) >= 2:
            variances[(name, bits)].append(float(np.var([np.mean(v) for v in by_seed.values()], ddof=1)))
    out: dict[str, SeedSpread] = {}
    for name in sorted({n for n, _ in variances}):
        bits = sorted(b for n, b in variances if n == name)
        out[name] = SeedSpread(
            sd={f"{b:g}": round(float(np.sqrt(np.mean(variances[(name, b)]))), 6) for b in bits},
            configs={f"{b:g}": len(variances[(name, b)]) for b in bits},
        )
    return out


def _summary(data: Rows, spec: FitSpec, excluded: Counter[str]) -> DataSummary:
    r = data.rows
    params = [x.params_b for x in r]
    return DataSummary(
        sources=sorted({x.source for x in r}),
        models={x.model: x.params_b for x in sorted(r, key=lambda x: (x.params_b, x.model))},
        families=sorted({x.family for x in r}),
        method=spec.method,
        stages=sorted({x.stage for x in r}),
        params_b=(min(params), max(params)),
        bits=sorted({x.bits for x in r}),
        group_sizes=sorted({x.group_size for x in r if x.group_size is not None}),
        calib_samples=sorted({x.calib_samples for x in r if x.calib_samples is not None}),
        n_rows=len(r),
        excluded=dict(sorted(excluded.items())),
    )


def _version() -> str:
    try:
        return version("strata")
    except PackageNotFoundError:
        return "unknown"
