"""The `fit run` pipeline: measurements (store and/or published CSVs) -> selected rows -> fitted profile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from advisor import catalog
from calibrate.published import published_csvs, read_published_csv
from calibrate.store import Store
from fit.collapse import configurations, fit_collapse
from fit.ols import FitError
from fit.presets import PRESETS
from fit.profiles import FitSpec, Rows, build_profile, select
from fit.stage_shift import other_stage, stage_shift
from strata.profile import CollapseModel, FitSettings, NutsSettings, OlsSettings, Profile, StageShift, SviSettings
from strata.rows import ResultRow
from strata.stage import stage_class
from strata.tiermap import load_tier_map

SHIPPED_PUBLISHED = Path(__file__).resolve().parent.parent / "calibrate" / "data" / "published"


def hidden_size_of(row: ResultRow) -> int | None:
    """Input width for per-channel rows: stored with the row, else the catalog's architecture for the model."""
    if row.hidden_size:
        return row.hidden_size
    info = catalog.find(row.model)
    return info.arch.hidden_size if info else None


def fit_profile(
    *,
    preset: str | None,
    name: str | None,
    families: list[str],
    stages: list[str],
    method: str,
    store: Path | None,
    published: Path | str | None,
    tier_map: Path | None,
    include_suspect: bool,
    engine: str,
    command: str,
    settings: FitSettings | None = None,
    joint: tuple[str, ...] = (),
    force: bool = False,
) -> Profile:
    """Build the FitSpec from a preset or options, gather rows, and fit with the named engine and its settings
    (default: the engine's defaults). A preset's profile records the command that regenerates it (``command_for``);
    any other records ``command``. ``joint``: presets fitted with it by a Bayesian engine, sharing the population
    prior; ``force``: write a Bayesian profile that fails its diagnostics, marked."""
    if engine not in ENGINES:
        raise FitError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    chosen = ENGINES[engine]
    settings = settings if settings is not None else chosen.settings()
    if settings.engine != engine:
        raise FitError(f"settings for engine {settings.engine!r} given to engine {engine!r}")
    spec = spec_of(preset, families, stages=stages, method=method, name=name)
    if preset is not None:
        command = command_for(preset, settings, joint)
    if include_suspect:
        spec = FitSpec(**{**spec.__dict__, "include_suspect": True})
    rows = read_rows(store=store, published=published, tier_map=tier_map)
    quant, ref = select(rows, spec, hidden_size_of, quantized=True), select(rows, spec, hidden_size_of, quantized=False)
    others = {p: select(rows, spec_for(p), hidden_size_of, quantized=True)
              for p in joint if p != spec.name and chosen.joint}  # fmt: skip
    profile = chosen.fit(Job(spec, quant, ref, others, settings, command, force))
    what = f"{spec.method} configurations of every family in {'the store' if store else ''}"
    what += (" and " if store and published else "") + ("the published tables" if published else "")
    profile.collapse = collapse_of(rows, spec.method, what)
    profile.stage_shift = stage_shift_of(rows, spec, profile)
    return profile


def stage_shift_of(rows: list[ResultRow], spec: FitSpec, profile: Profile) -> StageShift | None:
    """How far the profile's laws miss its families' models of the other stage class, where the rows hold any."""
    other = other_stage(profile.data.stages)
    names = sorted({r.stage for r in rows if r.family in spec.families and stage_class(r.stage) == other})
    if other is None or not names:
        return None
    return stage_shift(select(rows, replace(spec, stages=tuple(names)), hidden_size_of, quantized=True), profile)


# `fit run` flags of the settings' fields: what ``command_for`` writes, and what the CLI reads into settings.
FLAGS: dict[str, str] = {
    "warmup": "--warmup",
    "samples": "--samples",
    "chains": "--chains",
    "steps": "--svi-steps",
    "target_accept": "--target-accept",
    "seed": "--seed",
    "likelihood": "--likelihood",
}


def command_for(preset: str, settings: FitSettings, joint: tuple[str, ...] = ()) -> str:
    """The `fit run` command that regenerates a preset's shipped profile with these settings: the engine unless
    OLS, the joint presets, and only the settings that differ from their defaults."""
    default = type(settings)()
    changed = [k for k in type(settings).model_fields if getattr(settings, k) != getattr(default, k)]
    no_flag = [k for k in changed if k not in FLAGS]
    if no_flag:
        raise FitError(f"`fit run` has no flag for the setting {no_flag[0]!r}; fit through the Python API instead")
    parts = ["fit", "run", "--preset", preset]
    if settings.engine != "ols":
        parts += ["--engine", settings.engine, *(f"--joint {p}" for p in joint if p != preset)]
    parts += [f"{FLAGS[k]} {getattr(settings, k)}" for k in FLAGS if k in changed]
    return " ".join([*parts, "--out", f"profiles/{preset}.json"])


def settings_from_flags(engine: str, flags: dict[str, Any]) -> FitSettings:
    """The engine's settings from `fit run`'s flag values (by settings field; flags of other engines ignored)."""
    if engine not in ENGINES:
        raise FitError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    model = ENGINES[engine].settings
    try:
        return model(**{k: v for k, v in flags.items() if k in model.model_fields and k != "engine"})
    except ValidationError as exc:  # one line: the first bad flag and why
        first = exc.errors()[0]
        flag = FLAGS.get(str(first["loc"][0]), str(first["loc"][0]))
        raise FitError(f"{flag} {first['input']!r}: {first['msg']}") from None


@dataclass(frozen=True)
class Job:
    """What an engine fits: the spec's rows, any joint presets' rows, its settings, the command to record."""

    spec: FitSpec
    quant: Rows
    ref: Rows
    joint: dict[str, Rows]
    settings: FitSettings
    command: str
    force: bool


def _fit_ols(job: Job) -> Profile:
    return build_profile(job.quant, job.ref, job.spec, job.command)


def _fit_bayes(job: Job) -> Profile:
    """Fit the hierarchical model on this spec's rows (and any joint presets'), gate on diagnostics, build."""
    from fit.bayes_profile import bayes_profile, diagnostics_of, fit_data
    from fit.infer import INFERENCE, Thresholds, posterior_predictive_check

    settings = job.settings
    assert isinstance(settings, NutsSettings | SviSettings)  # ENGINES pairs this function with their settings only
    data = fit_data({job.spec.name: job.quant, **job.joint})
    try:
        post = INFERENCE[settings.engine](data, settings)
    except ValueError as exc:  # bad data: one line from FitData.validate
        raise FitError(str(exc)) from None
    thresholds = Thresholds()
    problems = post.diagnostics.problems(thresholds)
    if problems and not job.force:
        raise FitError(
            f"the {settings.engine} fit fails its diagnostics ({'; '.join(problems)}); no profile written: "
            "run longer (--samples/--warmup/--svi-steps) or pass --force to write it marked as failed"
        )
    diag = diagnostics_of(post, thresholds, forced=bool(problems))
    ppc = posterior_predictive_check(post, data, level=0.9, seed=settings.seed)
    diag.ppc_coverage = {"all": round(ppc.coverage, 4), **{t: round(v, 4) for t, v in ppc.by_tier.items()}}
    return bayes_profile(post, job.spec.name, job.quant, job.ref, job.spec, job.command, diag, settings)


@dataclass(frozen=True)
class Engine:
    """A way of fitting a profile: its settings' model, the fit, and whether it fits joint presets."""

    settings: type[OlsSettings] | type[NutsSettings] | type[SviSettings]
    fit: Callable[[Job], Profile]
    joint: bool


ENGINES: dict[str, Engine] = {
    "ols": Engine(OlsSettings, _fit_ols, joint=False),
    "nuts": Engine(NutsSettings, _fit_bayes, joint=True),
    "svi": Engine(SviSettings, _fit_bayes, joint=True),
}


def spec_of(
    preset: str | None,
    families: Sequence[str],
    *,
    stages: Sequence[str] = (),
    method: str = "GPTQ",
    name: str | None = None,
) -> FitSpec:
    """What to fit: a preset's spec, or the named families (and stages) quantized with ``method``."""
    if preset is not None:
        return spec_for(preset)
    if not families:
        raise FitError("name the model family to fit with --family (e.g. --family Qwen3), or use --preset")
    return FitSpec(
        name=name or "profile",
        description=f"{', '.join(families)} quantized with {method}",
        families=tuple(families),
        method=method,
        stages=tuple(stages),
    )


def spec_for(preset: str) -> FitSpec:
    if preset not in PRESETS:
        raise FitError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def gather(
    spec: FitSpec, *, store: Path | None = None, published: Path | str | None = "shipped", tier_map: Path | None = None
) -> tuple[Rows, Rows]:
    """The spec's quantized rows and 16-bit reference rows, from a store and/or the published CSVs."""
    rows = read_rows(store=store, published=published, tier_map=tier_map)
    return select(rows, spec, hidden_size_of, quantized=True), select(rows, spec, hidden_size_of, quantized=False)


def read_rows(
    *, store: Path | None = None, published: Path | str | None = "shipped", tier_map: Path | None = None
) -> list[ResultRow]:
    """Every row of a store and/or the published CSVs (deduplicated by the store's row identity). The store is
    read, never written: the published rows are merged in memory, and a store that does not exist is an error."""
    tmap = load_tier_map(tier_map)
    stored: list[ResultRow] = []
    if store is not None:
        with Store.open(store, create=False) as db:
            stored = list(db.rows())
    with Store.open(":memory:") as db:
        db.add(stored)
        if published is not None:
            folder = SHIPPED_PUBLISHED if published == "shipped" else Path(published)
            for csv_path in published_csvs(folder):
                db.add(read_published_csv(csv_path, tmap))
        rows = list(db.rows())
    if not rows:
        raise FitError("the store holds no rows; import published data or run a sweep first")
    return rows


def fit_profile_rows(spec: FitSpec, rows: list[ResultRow], settings: FitSettings) -> Profile:
    """A profile of ``spec`` fitted on ``rows`` with the settings' engine (validation: written even when a short
    Bayesian fit misses its diagnostics, marked forced, as validation scores what it predicts)."""
    quant, ref = select(rows, spec, hidden_size_of, quantized=True), select(rows, spec, hidden_size_of, quantized=False)
    return ENGINES[settings.engine].fit(Job(spec, quant, ref, {}, settings, "held-out", force=True))


def collapse_of(rows: list[ResultRow], method: str, source: str) -> CollapseModel | None:
    """The collapse probability fitted on every family's configurations of ``method`` (a population model: each
    family shifts it), or None when the data hold no collapse to fit."""
    try:
        return fit_collapse(configurations(rows, hidden_size_of, method), source)
    except ValueError:
        return None
