"""The stratified PTQ scaling law: one definition, pure array functions.

    Acc_adj = (Acc - r) / (1 - r)                                   (normalized accuracy, r = chance level)
    -ln Acc_adj = A * N^alpha * (log2 B)^beta * (log2 Cb)^gamma * G^delta   (four-factor law, per tier)
    -ln Acc_adj = A * N^alpha * (log2 B)^beta                               (the (N, B) baseline law)

N is the total parameter count (parameters, not billions), B the weight bit-width, G the quantization group
size, Cb the number of calibration samples. Everything is computed in log space,

    ln(-ln Acc_adj) = ln A + alpha ln N + beta ln log2 B + gamma ln log2 Cb + delta ln G,

which is both the paper's linearized OLS form and numerically safe. Every function takes an array namespace
``xp`` (numpy by default, ``jax.numpy`` inside NumPyro models) so the advisor, the OLS fit and the Bayesian
fit share this module; it imports nothing heavier than numpy.

Bounds, documented once:
- ``normalize`` never clips: a measured accuracy below chance gives Acc_adj < 0, one at 100% gives exactly 1.
  Such rows are kept (they are real measurements); only ``linearize`` must move them inside (0, 1), by the
  half-item continuity correction, and it reports which rows it moved so nothing vanishes silently.
- Per-channel quantization (G = -1) has no group: it is one group spanning the layer's whole input, so
  ``effective_group_size`` maps G = -1 to the layer's input width (for a model: its hidden size, the input width
  of the q/k/v/o/gate/up projections, six of the seven linear layers per block).
- The law needs B > 1 and Cb >= 2 (log2 of either must be positive); ``check_domain`` says so at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PER_CHANNEL = -1  # the group size that means one group per output row (per-channel quantization)
TIERS: tuple[str, ...] = ("KM", "KA", "KR")  # knowledge memorization, application, reasoning
COEF_NAMES = ("ln_a", "alpha", "beta", "gamma", "delta")  # the law's coefficients: the linearized design's columns
# The calibration-set size a quantized row that states none is fitted and predicted at: GPTQ's own (128 segments of
# C4). Only a family none of whose rows states one is fitted so (fit.profiles.select); its Cb is then one constant,
# which the family-centred design (fit/data.py) takes out of the likelihood, so the value chosen moves no exponent.
NOMINAL_CALIB_SAMPLES = 128


@dataclass(frozen=True)
class LawCoef:
    """Coefficients of the four-factor law. Fields may be scalars or arrays (e.g. posterior draws, shape (S, 1))."""

    ln_a: Any
    alpha: Any
    beta: Any
    gamma: Any = 0.0
    delta: Any = 0.0

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.ln_a, self.alpha, self.beta, self.gamma, self.delta)


def normalize(acc: Any, chance: Any, xp: Any = np) -> Any:
    """Chance-adjusted accuracy (Acc - r) / (1 - r). Not clipped: below chance gives < 0, 100% gives 1."""
    return (xp.asarray(acc) - chance) / (1.0 - xp.asarray(chance))


def denormalize(acc_adj: Any, chance: Any, xp: Any = np) -> Any:
    """Raw accuracy r + (1 - r) * Acc_adj: the inverse of ``normalize``."""
    return xp.asarray(chance) + (1.0 - xp.asarray(chance)) * xp.asarray(acc_adj)


def effective_group_size(group_size: Any, in_features: Any, xp: Any = np) -> Any:
    """Group size the law sees: G itself, or the layer's input width for per-channel (G = -1)."""
    g = xp.asarray(group_size)
    return xp.where(g == PER_CHANNEL, xp.asarray(in_features), g)


def group_size_problem(group: float, width: int | None = None) -> str | None:
    """Why ``group`` cannot be a group size, as the end of a sentence naming it, or None when it can.

    The one rule: a group size is PER_CHANNEL or a positive divisor of the layer's input width (GPTQ checkpoints
    and kernels need whole groups); without a width only the sign is checked.
    """
    if group == PER_CHANNEL:
        return None
    if not group > 0:  # (also NaN)
        return f"must be positive or {PER_CHANNEL} (per channel)"
    if width is not None and width % group:
        return f"does not divide the input width {width}"
    return None


def check_domain(bits: Any, group_size: Any, calib_samples: Any, params: Any) -> None:
    """Raise ValueError naming the first factor outside the law's domain (numpy inputs, at the edges only)."""
    b, g, c, n = (np.asarray(v, dtype=float) for v in (bits, group_size, calib_samples, params))
    if not np.all(np.isfinite(np.concatenate([a.ravel() for a in (b, g, c, n)]))):
        raise ValueError("bits, group size, calibration samples and params must be finite numbers")
    if np.any(b <= 1):
        raise ValueError(f"bits must be > 1 (log2 B must be positive), got {b[b <= 1].ravel()[0]:g}")
    for value in np.unique(g):
        if why := group_size_problem(float(value)):
            raise ValueError(f"group size {value:g} {why}")
    if np.any(c < 2):
        raise ValueError(f"calibration samples must be >= 2 (log2 Cb must be positive), got {c[c < 2].ravel()[0]:g}")
    if np.any(n <= 0):
        raise ValueError("params must be positive")


def design(params: Any, bits: Any, group_size: Any, calib_samples: Any, xp: Any = np) -> Any:
    """Columns of the linearized law: [1, ln N, ln log2 B, ln log2 Cb, ln G]; G already effective (> 0)."""
    n, b, g, c = (xp.asarray(v, dtype=float) for v in (params, bits, group_size, calib_samples))
    n, b, g, c = xp.broadcast_arrays(n, b, g, c)
    return xp.stack([xp.ones_like(n), xp.log(n), xp.log(xp.log2(b)), xp.log(xp.log2(c)), xp.log(g)], axis=-1)


def log_neg_log_acc(coef: LawCoef, params: Any, bits: Any, group_size: Any, calib_samples: Any, xp: Any = np) -> Any:
    """ln(-ln Acc_adj) under the four-factor law. Broadcasts coefficient arrays against factor arrays."""
    return (
        coef.ln_a
        + coef.alpha * xp.log(xp.asarray(params, dtype=float))
        + coef.beta * xp.log(xp.log2(xp.asarray(bits, dtype=float)))
        + coef.gamma * xp.log(xp.log2(xp.asarray(calib_samples, dtype=float)))
        + coef.delta * xp.log(xp.asarray(group_size, dtype=float))
    )


def four_factor(coef: LawCoef, params: Any, bits: Any, group_size: Any, calib_samples: Any, xp: Any = np) -> Any:
    """Predicted chance-adjusted accuracy exp(-A N^a (log2 B)^b (log2 Cb)^g G^d), in (0, 1)."""
    return xp.exp(-xp.exp(log_neg_log_acc(coef, params, bits, group_size, calib_samples, xp)))


def baseline(coef: LawCoef, params: Any, bits: Any, xp: Any = np) -> Any:
    """The (N, B) baseline law: the four-factor law with gamma = delta = 0."""
    z = coef.ln_a + coef.alpha * xp.log(xp.asarray(params, dtype=float))
    z = z + coef.beta * xp.log(xp.log2(xp.asarray(bits, dtype=float)))
    return xp.exp(-xp.exp(z))


def linearize(acc_adj: Any, n_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """ln(-ln y) for OLS, with y moved inside (0, 1) by the half-item continuity correction.

    y is clipped to [1/(2n), 1 - 1/(2n)] (n = items behind the accuracy; 1000 where unknown): an accuracy at
    or below chance, or at 100%, cannot be told apart from one half an item away. Returns the transformed
    values and a boolean mask of the rows that were moved, so callers can report them.
    """
    y = np.asarray(acc_adj, dtype=float)
    n = np.full_like(y, 1000.0) if n_items is None else np.asarray(n_items, dtype=float)
    eps = 1.0 / (2.0 * np.maximum(n, 1.0))
    clipped = (y < eps) | (y > 1.0 - eps)
    y = np.clip(y, eps, 1.0 - eps)
    return np.log(-np.log(y)), clipped
