"""How far a tier law errs in N past the end of its data, measured on the data itself.

A power law in N fitted on a range of sizes is least sure at and beyond the range's ends: the posterior of the N
exponent knows only the sizes it saw, so its band hardly grows outside them (issue 13: Qwen3-32B 5-10 points too
optimistic with intervals that do not grow; on the first zoo, the held-out 615k model with 12-31% coverage). This module
measures the error the law makes one step outside its data: fit the tier law (OLS, the paper's procedure: fast,
and the point is the law form, not the inference) on every model but the largest, predict the largest; then the
same for the smallest. A held-out model's mean residual on the ln(-ln Acc_adj) scale (its configurations share it,
as a model deviation) over its distance from the training range in ln N is a slope; ``kappa`` is their root mean
square. The advisor then adds a deviation with sd ``kappa * d`` for a model at distance ``d`` outside the profile's
range, shared by its configurations, so its intervals widen with the distance. It includes the model's ordinary
deviation too (omega), so it errs wide.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from fit.ols import FitError
from fit.profiles import Rows, ols_law, tier_obs
from strata.law import COEF_NAMES, design, linearize
from strata.profile import ExtrapolationScale
from strata.rows import ResultRow


def _sized(size: float, inside: bool, row: ResultRow) -> bool:
    return (row.params_b == size) == inside


def end_slopes(quant: Rows, tier: str) -> tuple[list[float], list[str]]:
    """Each end's slope (mean residual of the held-out size per unit of ln N distance) and which sizes were held
    out; none with fewer than three sizes (two remain to fit, one to predict, only with three or more)."""
    sizes = sorted({r.params_b for r in quant.rows if r.tier == tier})
    slopes: list[float] = []
    held: list[str] = []
    if len(sizes) < 3:
        return slopes, held
    for end, nearest in ((sizes[-1], sizes[-2]), (sizes[0], sizes[1])):
        train, test = quant.where(partial(_sized, end, False)), quant.where(partial(_sized, end, True))
        fit_obs, test_obs = tier_obs(train, tier), tier_obs(test, tier)
        if len(test_obs) == 0 or len(fit_obs) <= len(COEF_NAMES):
            continue
        try:
            res = ols_law(fit_obs, tier)
        except FitError:  # the rest cannot carry the law: no slope from this end
            continue
        z_obs, _ = linearize(test_obs.y_adj, test_obs.n)
        z_pred = design(test_obs.params, test_obs.bits, test_obs.group, test_obs.calib) @ res.coef
        slopes.append(float(np.mean(z_obs - z_pred)) / abs(np.log(end / nearest)))
        held.append(f"{end:g}B")
    return slopes, held


def extrapolation_scales(quant: Rows, tiers: list[str]) -> dict[str, ExtrapolationScale]:
    """Per tier: its end slopes, and ``kappa``, the root mean square of every tier's end slopes. Pooled over
    tiers because the N law's form is shared and two ends per tier are too few to tell a tier's error from noise
    (on the first zoo held out at 615k, KM's own slope from 394k was -0.10 and its error at 615k -0.62)."""
    found = {t: end_slopes(quant, t) for t in tiers}
    every = [s for slopes, _ in found.values() for s in slopes]
    if not every:
        return {}
    kappa = round(float(np.sqrt(np.mean(np.square(every)))), 6)
    return {
        t: ExtrapolationScale(kappa=kappa, held_out=held, slopes=[round(s, 6) for s in slopes])
        for t, (slopes, held) in found.items()
        if slopes
    }
