"""The small sweep the sweep and executor tests share: the shipped xs model, 2 configurations, 8 items per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
XS = ROOT / "examples" / "models" / "strata-world-xs"
CALIB = ROOT / "examples" / "calib" / "strata-world.txt"


def tiny_spec(store_path: Path, **over: Any) -> dict[str, Any]:
    """A spec mapping (reference + W2/W4 g32 at Cb 4, ~15 s on a CPU); ``over`` replaces top-level fields."""
    data: dict[str, Any] = {
        "name": "t",
        "models": [{"model": str(XS), "family": "strata-world"}],
        "method": "gptq",
        "bits": [2, 4],
        "group_sizes": [32],
        "calib_samples": [4],
        "calibration": {"files": [str(CALIB)], "seqlen": 16, "seeds": [0]},
        "gptq": {"batch_size": 4},
        "evaluation": {"limit": 8, "seed": 0},
        "store": str(store_path),
    }
    data.update(over)
    return data
