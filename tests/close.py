"""Comparing computed numbers across machines: floats within a stated tolerance, everything else exactly.

Floating-point results (fitted coefficients, posterior draws, accuracies) differ in the last digits between CPUs,
BLAS kernels and thread counts; keys, counts and strings do not, so only floats get a tolerance.
"""

from __future__ import annotations

import math
from typing import Any


def assert_close(got: Any, want: Any, *, rel: float, abs_: float, path: str = "") -> None:
    """Recursive equality of JSON-like values; floats equal within ``rel`` relative or ``abs_`` absolute."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(want, (int, float)), f"{path}: {got!r} vs {want!r}"
        assert math.isclose(got, want, rel_tol=rel, abs_tol=abs_), f"{path}: {got!r} vs {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys {sorted(got)} vs {sorted(want)}"
        for k in want:
            assert_close(got[k], want[k], rel=rel, abs_=abs_, path=f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{path}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, rel=rel, abs_=abs_, path=f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"
