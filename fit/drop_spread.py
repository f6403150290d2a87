"""How far one model's quantization drop strays from its tier law's: the conditioning's ``s_t`` (``strata.baseline``).

With a baseline, a task's prediction is its own 16-bit score moved by the tier law's predicted drop; what is left
unknown is how this model's drop differs from the law's. That is measured here, on the models the profile was
fitted on: for every quantized row at B >= 3 with a 16-bit row of the same source, model, stage and task, on
z = ln(-ln Acc_adj),

    r = (z_row - z_16bit_row) - (z_tier_law(N, B, G, Cb) - z_16bit_tier_law(N))

and ``sd`` is sqrt(mean r^2), the root mean square (a law whose drop is biased counts its bias). A quantized and a
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
        resid = (z_q - z_u) - (law_q - law_u)
        sd = float(np.sqrt(np.mean(resid**2)))
        out[tier] = DropSpread(sd=round(sd, 6), n=len(pairs), models=len({r.model for r, _, _ in pairs}))
    return out
