"""advisor: recommends the cheapest PTQ configuration (bits, group size, calibration samples) that meets
per-tier accuracy targets, from fitted profiles. Imports numpy, pydantic and rich only: never torch or jax."""

from advisor.api import predict, recommend, resolve_model, shipped_profiles

__all__ = ["predict", "recommend", "resolve_model", "shipped_profiles"]
