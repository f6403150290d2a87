"""The `fit run` pipeline: measurements (store and/or published CSVs) -> selected rows -> fitted profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advisor import catalog
from calibrate.published import published_csvs, read_published_csv
from calibrate.store import Store
from fit.ols import FitError
from fit.presets import PRESETS
from fit.profiles import FitSpec, Rows, build_profile, select
from strata.profile import Profile
from strata.rows import ResultRow
from strata.tiermap import load_tier_map

ENGINES = ("ols", "nuts", "svi")
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
    bayes: BayesOptions | None = None,
) -> Profile:
    """Build the FitSpec from a preset or options, gather rows, and fit."""
    if engine not in ENGINES:
        raise FitError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if preset is not None:
        spec = spec_for(preset)
        command = f"fit run --preset {preset} --out profiles/{preset}.json"
        if engine != "ols":
            opts = bayes or BayesOptions()
            joint = "".join(f" --joint {p}" for p in opts.joint_with if p != preset)
            default = BayesOptions()
            flags = [
                (f"--warmup {opts.num_warmup}", opts.num_warmup != default.num_warmup and engine == "nuts"),
                (f"--samples {opts.num_samples}", opts.num_samples != default.num_samples and engine == "nuts"),
                (f"--chains {opts.num_chains}", opts.num_chains != default.num_chains and engine == "nuts"),
                (f"--svi-steps {opts.svi_steps}", opts.svi_steps != default.svi_steps and engine == "svi"),
                (f"--target-accept {opts.target_accept}", opts.target_accept != default.target_accept),
                (f"--seed {opts.seed}", opts.seed != default.seed),
                (f"--likelihood {opts.likelihood}", opts.likelihood != default.likelihood),
            ]
            extra = "".join(" " + f for f, on in flags if on)
            command = f"fit run --preset {preset} --engine {engine}{joint}{extra} --out profiles/{preset}.json"
    else:
        if not families:
            raise FitError("name the model family to fit with --family (e.g. --family Qwen3), or use --preset")
        spec = FitSpec(
            name=name or "profile",
            description=f"{', '.join(families)} quantized with {method}",
            families=tuple(families),
            method=method,
            stages=tuple(stages),
        )
    if include_suspect:
        spec = FitSpec(**{**spec.__dict__, "include_suspect": True})
    quant, ref = gather(spec, store=store, published=published, tier_map=tier_map)
    if engine == "ols":
        return build_profile(quant, ref, spec, command)
    return fit_bayes(spec, quant, ref, command, engine=engine, bayes=bayes, store=store, published=published,
                     tier_map=tier_map)  # fmt: skip


@dataclass(frozen=True)
class BayesOptions:
    """Inference settings for `fit run --engine nuts|svi` (the model itself is fit.bayes.stratified_law)."""

    joint_with: tuple[str, ...] = ()  # presets fitted jointly, sharing the population prior
    num_warmup: int = 1000  # 500 left a rare divergence in one of three seeded runs on the published data
    num_samples: int = 2000  # per chain: 1500 gave min ESS 391-497 (gate: 400) on the published data
    num_chains: int = 2
    svi_steps: int = 4000
    target_accept: float = 0.95  # NUTS: 0.9 left 3 divergences per 3,000 draws on the published data
    seed: int = 0
    likelihood: str = "beta_binomial"
    force: bool = False


def fit_bayes(
    spec: FitSpec,
    quant: Rows,
    ref: Rows,
    command: str,
    *,
    engine: str,
    bayes: BayesOptions | None,
    store: Path | None,
    published: Path | str | None,
    tier_map: Path | None,
) -> Profile:
    """Fit the hierarchical model on this spec's rows (and any joint presets'), gate on diagnostics, build."""
    from fit.bayes_profile import bayes_profile, diagnostics_of, fit_data
    from fit.infer import Thresholds, posterior_predictive_check, run_nuts, run_svi

    opts = bayes or BayesOptions()
    parts = {spec.name: quant}
    for other in opts.joint_with:
        if other != spec.name:
            parts[other] = gather(spec_for(other), store=store, published=published, tier_map=tier_map)[0]
    data = fit_data(parts)
    try:
        if engine == "nuts":
            post = run_nuts(data, num_warmup=opts.num_warmup, num_samples=opts.num_samples,
                            num_chains=opts.num_chains, seed=opts.seed, likelihood=opts.likelihood,
                            target_accept_prob=opts.target_accept)  # fmt: skip
        else:
            post = run_svi(data, steps=opts.svi_steps, seed=opts.seed, likelihood=opts.likelihood)
    except ValueError as exc:  # bad data: one line from FitData.validate
        raise FitError(str(exc)) from None
    thresholds = Thresholds()
    problems = post.diagnostics.problems(thresholds)
    if problems and not opts.force:
        raise FitError(
            f"the {engine} fit fails its diagnostics ({'; '.join(problems)}); no profile written: "
            "run longer (--samples/--warmup/--svi-steps) or pass --force to write it marked as failed"
        )
    diag = diagnostics_of(post, thresholds, forced=bool(problems))
    ppc = posterior_predictive_check(post, data, level=0.9, seed=opts.seed)
    diag.ppc_coverage = {"all": round(ppc.coverage, 4), **{t: round(v, 4) for t, v in ppc.by_tier.items()}}
    return bayes_profile(post, spec.name, quant, ref, spec, command, diag)


def spec_for(preset: str) -> FitSpec:
    if preset not in PRESETS:
        raise FitError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def gather(
    spec: FitSpec, *, store: Path | None = None, published: Path | str | None = "shipped", tier_map: Path | None = None
) -> tuple[Rows, Rows]:
    """The spec's quantized rows and 16-bit reference rows, from a store and/or the published CSVs."""
    tmap = load_tier_map(tier_map)
    with Store.open(store if store is not None else ":memory:") as db:
        if published is not None:
            folder = SHIPPED_PUBLISHED if published == "shipped" else Path(published)
            for csv_path in published_csvs(folder):
                db.add(read_published_csv(csv_path, tmap))
        rows = list(db.rows())
    if not rows:
        raise FitError("the store holds no rows; import published data or run a sweep first")
    return select(rows, spec, hidden_size_of, quantized=True), select(rows, spec, hidden_size_of, quantized=False)
