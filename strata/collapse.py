"""The collapse: the phase transition at low bits that the smooth law does not describe, as a probability.

Published GPTQ tables show it plainly (``bench/heldout.py``, ``fit/collapse.py``): at 2 bits nearly every model keeps
almost none of its above-chance accuracy, and Meta-Llama-3-8B already collapses at 3 bits per-channel while
Llama-2 and Mistral of the same size keep ~90%. A configuration *collapses* when the median over its tasks of
retained chance-adjusted accuracy (quantized / unquantized) falls below ``THRESHOLD``.

    P(collapse) = sigmoid(w0 + w_B B + w_G ln G + w_N ln N + u_family),   u_family ~ N(0, tau)

B enters linearly: on the published configurations it fits best of ln log2 B, log2 B, 1/(B - 1) and B (log
likelihood -4.4, -3.4, -4.7, -2.7), the transition between 2 and 4 bits being sharper than the law's ln log2 B.

The weights are posterior draws of a logistic fit on published configurations (``fit.collapse``: Laplace
proposals reweighted to the exact posterior, from seeded normals, the same on every CPU); a family not in the fit
gets its ``u`` drawn from N(0, tau), so its probability is honestly uncertain. A collapsed configuration keeps
``retained`` of its unquantized accuracy: draws from the retained fractions observed in collapsed configurations.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from strata.profile import CollapseModel


def design(bits: Any, group_eff: Any, params: Any) -> np.ndarray:
    """(M, 4) features of configurations: 1, B, ln G (effective: per-channel is the input width), ln N."""
    b, g, n = (np.atleast_1d(np.asarray(v, float)) for v in (bits, group_eff, params))
    b, g, n = np.broadcast_arrays(b, g, n)
    return np.stack([np.ones_like(b), b, np.log(g), np.log(n)], axis=-1)


def probability(model: CollapseModel, family: str, bits: Any, group_eff: Any, params: Any) -> np.ndarray:
    """(S, M) draws of P(collapse) of each configuration for a model of ``family``."""
    w = np.asarray(model.draws, float)  # (S, 4)
    x = design(bits, group_eff, params)  # (M, 4)
    u = model.family_effect.get(family)
    if u is None:  # a family not in the fit: its shift drawn from the population, once per family
        rng = np.random.default_rng(zlib.crc32(f"collapse\x00{family}".encode()))
        shift = np.asarray(model.tau * rng.standard_normal(w.shape[0]), float)
    else:
        shift = np.asarray(np.resize(np.asarray(u, float), w.shape[0]), float)
    eta = w @ x.T + shift[:, None]
    return 1.0 / (1.0 + np.exp(-eta))


def mix(adj: np.ndarray, reference: np.ndarray, p: np.ndarray, model: CollapseModel, key: str) -> np.ndarray:
    """Draws of chance-adjusted accuracy (S, M) with the collapse mixed in: in each draw a configuration collapses
    with its probability, and then keeps a retained fraction (drawn from those observed) of ``reference`` (S, 1),
    the model's unquantized value. One uniform per draw is shared by the configurations: a configuration more
    likely to collapse collapses in every draw where a less likely one does."""
    rng = np.random.default_rng(zlib.crc32(f"collapse\x00{key}".encode()))
    size = int(adj.shape[0])
    u = rng.uniform(size=size)[:, None]
    kept = np.asarray(model.retained, float)[rng.integers(0, len(model.retained), size)][:, None]
    if p.shape[0] != size:  # draws of an independently fitted model, resampled to as many rows
        p = p[rng.integers(0, p.shape[0], size)]
    return np.where(u < p, kept * reference, adj)
