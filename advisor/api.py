"""The advisor's Python API: the same answers as the CLI, as pydantic objects.

>>> from advisor import recommend
>>> rec = recommend("qwen3-8b", min_ka=0.5)
>>> rec.recommendation.config.bits
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from advisor import catalog, core
from advisor.catalog import ModelInfo
from advisor.condition import Conditioning, shipped_baseline
from advisor.schema import Deployment, Frontier, Prediction, Recommendation
from strata.baseline import Baseline, load_baseline, parse_baseline
from strata.profile import Profile, ProfileError, load_profile
from strata.stage import BASE, stage_of_name


def shipped_profiles() -> dict[str, Path]:
    """Profiles installed with strata (the repository's profiles/ folder), by name."""
    import profiles

    return {p.stem: p for p in sorted(profiles.DIR.glob("*.json"))}


def resolve_model(
    model: str | None = None, *, params_b: float | None = None, family: str | None = None, config: str | None = None
) -> ModelInfo:
    """A model from the catalog, a local config.json (file or folder), or a size and family."""
    local = config if config is not None else model
    if config is not None or (model is not None and Path(model).is_dir() and (Path(model) / "config.json").exists()):
        info = catalog.from_config(str(local))
        # the family its measurements are stored under (a profile's data), where that is not the config's type
        return replace(info, family=family) if family else info
    if params_b is not None:
        fam = family or (catalog.lookup(model).family if model else None)
        if fam is None:
            raise catalog.CatalogError("--params needs --family (e.g. --family Qwen3) to choose an architecture")
        return catalog.from_params(params_b, fam, name=model or "")
    if model is None:
        raise catalog.CatalogError("name a model (e.g. --model qwen3-8b), or give --config or --params/--family")
    return catalog.lookup(model)


def choose_profile(model: ModelInfo, profile: str | None = None, stage: str | None = None) -> tuple[Profile, str]:
    """A profile by path or shipped name, or the shipped profile that applies to the model's family: for a base
    model (``stage``), the one fitted on the family's base models where one is shipped (``Qwen3-Base``)."""
    shipped = shipped_profiles()
    if profile is not None:
        if profile in shipped:
            return load_profile(shipped[profile]), str(shipped[profile])
        if profile.endswith(".json") or Path(profile).exists():
            return load_profile(profile), profile
        raise ProfileError(f"unknown profile {profile!r}; pass a JSON path or one of {', '.join(sorted(shipped))}")
    if stage == BASE:
        for _, path in sorted(shipped.items()):
            if f"{model.family}-Base" in _applies_to(path):
                return load_profile(path), str(path)
    for _, path in sorted(shipped.items()):
        if model.family in _applies_to(path):
            return load_profile(path), str(path)
    for _, path in sorted(shipped.items()):  # a family no profile is fitted on: a new family of the population
        prof = load_profile(path)
        if prof.new_family is not None:
            return prof, str(path)
    raise ProfileError(
        f"no shipped profile applies to family {model.family}; pass --profile (shipped: {', '.join(sorted(shipped))})"
    )


BaselineArg = str | Path | dict[str, Any] | Baseline | None


def _applies_to(path: Path) -> list[str]:
    """A shipped profile's ``applies_to``, read from the head of the file: profiles are written field by field in
    the schema's order, so it comes before the laws, and parsing ~300 kB per profile would be most of a cold start.
    """
    try:
        with path.open() as f:
            head = f.read(8192)
    except OSError:
        return []
    m = re.search(r'"applies_to":\s*(\[[^\]]*\])', head)
    if m is None:  # not where the writer puts it: read the whole file
        try:
            return list(json.loads(path.read_text()).get("applies_to", []))
        except (OSError, ValueError):
            return []
    return list(json.loads(m.group(1)))


def _query(
    model: str | ModelInfo,
    profile: str | None,
    baseline: BaselineArg = None,
    published: bool = True,
    requested: str | None = None,
    **model_kw: Any,
) -> core.Query:
    """The model, its profile, and its own unquantized scores: ``baseline`` (a file, a dict or a Baseline), else
    (``published``) the published scores shipped for that very model id, else none (the law alone)."""
    info = model if isinstance(model, ModelInfo) else resolve_model(model, **model_kw)
    # the stage the user's own id names (a catalog entry is shared by a model's stages)
    stage = next((s for n in (requested, model if isinstance(model, str) else None) if (s := stage_of_name(n))), None)
    prof, path = choose_profile(info, profile, stage)
    found: tuple[Baseline, str] | None = None
    if isinstance(baseline, Baseline):
        found = baseline, "given"
    elif isinstance(baseline, dict):
        found = parse_baseline(baseline), "given"
    elif baseline is not None:
        found = load_baseline(baseline), str(baseline)
    elif published:
        names = [n for n in (requested, model if isinstance(model, str) else None) if n]
        # the model's own ids only: a catalog alias may name another stage of it (an -Instruct id resolves to the
        # base's architecture, but its scores are another model's)
        found = shipped_baseline(*names, info.hf_id, info.name)
    cond = None
    if found is not None:
        cond = Conditioning.of(prof, info.name, info.params, *found, family=info.family, stage=stage)
    return core.Query(info, prof, path, cond, stage)


def recommend(
    model: str | ModelInfo,
    *,
    min_km: float | None = None,
    min_ka: float | None = None,
    min_kr: float | None = None,
    memory_gb: float | None = None,
    profile: str | None = None,
    bits: Sequence[float] | None = None,
    group_sizes: Sequence[int] = core.DEFAULT_GROUPS,
    calib_samples: Sequence[int] = core.DEFAULT_CALIB,
    relative: bool = False,
    confidence: float | None = 0.9,
    deployment: Deployment | None = None,
    allow_slow: bool = False,
    baseline: BaselineArg = None,
    published_baseline: bool = True,
) -> Recommendation:
    """The cheapest (B, G, Cb) meeting the tier targets; see ``advisor.core`` for the definitions.

    ``deployment`` (engine, context, batch, KV dtype) bills the KV cache and runtime too and keeps the search to
    what the engine serves; ``allow_slow`` also admits configurations it runs only on a slow kernel path."""
    targets = {t: v for t, v in (("KM", min_km), ("KA", min_ka), ("KR", min_kr)) if v is not None}
    return core.recommend(
        _query(model, profile, baseline, published_baseline),
        targets,
        memory_gb=memory_gb,
        bits_grid=bits,
        group_grid=group_sizes,
        calib_grid=calib_samples,
        scale=core.RELATIVE if relative else core.ADJUSTED,
        confidence=confidence,
        deployment=deployment,
        allow_slow=allow_slow,
    )


def predict(
    model: str | ModelInfo,
    *,
    bits: float,
    group_size: int,
    calib_samples: int,
    tasks: Sequence[str] = (),
    profile: str | None = None,
    extrapolate: bool = False,
    deployment: Deployment | None = None,
    baseline: BaselineArg = None,
    published_baseline: bool = True,
) -> Prediction:
    """Predicted per-tier and per-task accuracy of one configuration (and its memory bill with ``deployment``).

    ``baseline``: the model's own unquantized scores (see ``strata.baseline``); by default the published ones
    shipped for this model id, if any (``published_baseline=False``: the law alone)."""
    q = _query(model, profile, baseline, published_baseline)
    return core.predict(q, bits, group_size, calib_samples, tasks, extrapolate=extrapolate, deployment=deployment)


def frontier(
    model: str | ModelInfo,
    *,
    targets: dict[str, float] | None = None,
    profile: str | None = None,
    memory_gb: float | None = None,
    bits: Sequence[float] | None = None,
    group_sizes: Sequence[int] = core.DEFAULT_GROUPS,
    calib_samples: Sequence[int] = core.DEFAULT_CALIB,
    deployment: Deployment | None = None,
    allow_slow: bool = False,
    baseline: BaselineArg = None,
    published_baseline: bool = True,
) -> Frontier:
    """Every configuration no other beats on memory and every tier's predicted mean at once, cheapest first."""
    return core.frontier(
        _query(model, profile, baseline, published_baseline),
        targets,
        memory_gb=memory_gb,
        bits_grid=bits,
        group_grid=group_sizes,
        calib_grid=calib_samples,
        deployment=deployment,
        allow_slow=allow_slow,
    )
