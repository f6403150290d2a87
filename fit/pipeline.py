"""The `fit run` pipeline: measurements (store and/or published CSVs) -> selected rows -> fitted profile."""

from __future__ import annotations

from pathlib import Path

from advisor import catalog
from advisor.schema import Profile
from calibrate.published import published_csvs, read_published_csv
from calibrate.store import ResultRow, Store
from calibrate.tiermap import load_tier_map
from fit.ols import FitError
from fit.presets import PRESETS
from fit.profiles import FitSpec, Rows, build_profile, select

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
) -> Profile:
    """Build the FitSpec from a preset or options, gather rows, and fit."""
    if engine != "ols":
        raise FitError(f"unknown engine {engine!r}; use ols")
    if preset is not None:
        spec = spec_for(preset)
        command = f"fit run --preset {preset} --out profiles/{preset}.json"
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
    return build_profile(quant, ref, spec, command)


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
