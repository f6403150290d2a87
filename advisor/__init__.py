"""advisor: recommends the cheapest PTQ configuration (bits, group size, calibration samples) that meets
per-tier accuracy targets, from fitted profiles. Imports numpy, pydantic and rich only: never torch or jax."""

from advisor.api import frontier, predict, recommend, resolve_model, shipped_profiles
from advisor.schema import Deployment

__all__ = ["Deployment", "frontier", "predict", "recommend", "resolve_model", "shipped_profiles"]
