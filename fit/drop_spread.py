"""How far one model's quantization drop strays from its tier law's: the conditioning's ``s_t`` (``strata.baseline``).

With a baseline, a task's prediction is its own 16-bit score moved by the tier law's predicted drop; what is left
unknown is how this model's drop differs from the law's. That is measured here, on the models the profile was
fitted on: for every quantized row at B >= 3 with a 16-bit row of the same source, model, stage and task, on
z = ln(-ln Acc_adj),

    r = (z_row - z_16bit_row) - (z_tier_law(N, B, G, Cb) - z_16bit_tier_law(N))

r is modelled as N(0, sd^2 + (scale d)^2), d = z_tier_law - z_16bit_tier_law the law's own drop: a model's drop
is the law's times (1 + scale e2) plus sd e1 (``strata.profile.DropSpread``). A model more sensitive than the law
says is so at every bit-width, so its deviation grows with the drop. On the published rows this fits far better
than one sd for all (log likelihood up by 31 and 44 on KA of qwen3 and qwen3-base, by 12-15 on llama's tiers), and
the residuals so scaled have a root mean square of 0.8-1.2 at each bit-width, where one sd for all made 8-bit
drops' intervals too wide and 3-4-bit ones too narrow. (sd, scale) are the maximum likelihood over the rows
as if independent (a composite likelihood: a model's rows share its deviation, which leaves the variance estimate
consistent), on a grid: two parameters, no optimizer start or tolerance to depend on. With fewer than
``MIN_FOR_SCALE`` drops, scale is 0 and sd the drops' root mean square.

A quantized and a
16-bit score on the same items err together, so r carries only the items that flip between them, and that is
what a prediction from a baseline over the same items has to carry too: the advisor adds the baseline's own item
noise only where the baseline did not see the whole test split (``strata.baseline.tier_baseline_z``). (Before,
the 16-bit score's full item noise was taken out of the spread and added back by the advisor. That noise is
larger than the drops' measured scatter on KR, so the spread was clipped at 0, and the intervals still carried
more than the scatter: 96-97% held-out coverage for a 90% interval.)
Collapsed configurations (median retained
fraction under the collapse threshold) are left out: the collapse model answers for them, not the smooth drop.

Before this, the Bayesian profiles stood in the law's omega (a model's deviation in *level*, several times wider
than its deviation in drop), and OLS profiles nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fit.collapse import configurations
from fit.profiles import BITS_SUPPORTED, Rows
from strata.law import effective_group_size, linearize, log_neg_log_acc, normalize
from strata.profile import DropSpread, LawFit, point_coef

MIN_BITS = BITS_SUPPORTED[0]  # 2-bit rows belong to the collapse model (the smooth law overshoots them)
# Fewer drops than this cannot pin two variance parameters: llama3's 14 KR drops (3 models) put sd at the grid's
# floor and scale at 0.94, and then missed its own in-sample Llama-3.1-8B-Instruct ARC-Challenge row; one RMS is
# the honest summary of so few.
MIN_FOR_SCALE = 30
_SD_GRID = np.geomspace(1e-3, 1.0, 241)
_SCALE_GRID = np.linspace(0.0, 2.0, 201)


def drop_spreads(
    quant: Rows, ref: Rows, tiers: Mapping[str, LawFit], unquantized: Mapping[str, LawFit]
) -> dict[str, DropSpread]:
    """Per tier with both laws: the spread of the measured drops about the law's (empty where no row pairs up)."""
    fp16 = {(r.source, r.model, r.stage, r.task): r for r in ref.rows if r.accuracy is not None}
    hidden = {id(r): h for r, h in zip(quant.rows, quant.hidden, strict=True)}
    collapsed = {m.key for m in configurations(quant.rows + ref.rows, lambda r: hidden.get(id(r))) if m.collapsed}
    out: dict[str, DropSpread] = {}
    for tier in sorted(set(tiers) & set(unquantized)):
        pairs = [
            (r, h, fp16[(r.source, r.model, r.stage, r.task)])
            for r, h in zip(quant.rows, quant.hidden, strict=True)
            if r.tier == tier and r.bits >= MIN_BITS and r.accuracy is not None
            and (r.source, r.model, r.stage, r.task) in fp16
            and (r.source, r.model, r.stage, r.bits, r.group_size, r.calib_samples) not in collapsed
        ]  # fmt: skip
        if not pairs:
            continue
        params = np.array([r.params_b * 1e9 for r, _, _ in pairs])
        bits = np.array([r.bits for r, _, _ in pairs], float)
        group = effective_group_size(
            np.array([r.group_size if r.group_size is not None else -1 for r, _, _ in pairs], float),
            np.array([h for _, h, _ in pairs], float),
        )
        calib = np.array([r.calib_samples or 2 for r, _, _ in pairs], float)  # as the fit reads it (task_obs)
        chance = np.array([r.chance or 0.0 for r, _, _ in pairs])
        n_q = np.array([r.n_items or 1000 for r, _, _ in pairs], float)
        n_u = np.array([u.n_items or 1000 for _, _, u in pairs], float)
        acc_u = np.array([u.accuracy for _, _, u in pairs], float)
        z_q, _ = linearize(normalize(np.array([r.accuracy for r, _, _ in pairs], float), chance), n_q)
        z_u, _ = linearize(normalize(acc_u, chance), n_u)
        one = np.ones_like(params)
        law_q = np.asarray(log_neg_log_acc(point_coef(tiers[tier]), params, bits, group, calib))[0]
        law_u = np.asarray(log_neg_log_acc(point_coef(unquantized[tier]), params, one * 16, one, one * 2))[0]
        sd, scale = fit_spread((z_q - z_u) - (law_q - law_u), law_q - law_u)
        out[tier] = DropSpread(
            sd=round(sd, 6), scale=round(scale, 6), n=len(pairs), models=len({r.model for r, _, _ in pairs})
        )
    return out


def fit_spread(resid: np.ndarray, drop: np.ndarray) -> tuple[float, float]:
    """(sd, scale) of residuals ``resid`` ~ N(0, sd^2 + (scale drop)^2): maximum likelihood on a grid (the root
    mean square and 0 for too few rows)."""
    resid, drop = np.asarray(resid, float), np.asarray(drop, float)
    if len(resid) < MIN_FOR_SCALE:
        return float(np.sqrt(np.mean(resid**2))), 0.0
    grown = (_SCALE_GRID[:, None] * drop[None, :]) ** 2  # (scale, row)
    nll = np.empty((len(_SD_GRID), len(_SCALE_GRID)))
    for k, sd in enumerate(_SD_GRID):  # one sd at a time: (scale, row) in memory, not (sd, scale, row)
        var = sd**2 + grown
        nll[k] = 0.5 * np.sum(np.log(var) + resid**2 / var, axis=1)
    best = np.unravel_index(int(np.argmin(nll)), nll.shape)
    return float(_SD_GRID[best[0]]), float(_SCALE_GRID[best[1]])
