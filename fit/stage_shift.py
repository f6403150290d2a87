"""How far a profile's tier laws miss the models of its family at the other training stage (``strata.stage``).

A profile fitted on post-trained Qwen3 says nothing about how Qwen3-8B-Base scores: post-training moves
benchmark accuracy by more than one stage's models scatter about the law. Where the published rows hold the
profile's families at the other stage class, each of their tier observations at B >= 3 (the mean over the tier's
tasks per model and configuration, as the fit reads them) is scored against the law's point prediction, on
z = ln(-ln Acc_adj):

    sd_tier = sqrt(max(mean r^2 - omega^2, 0)),   r = z_row - z_law(N, B, G, Cb)

the root mean square (the shift is mostly a bias: post-trained Qwen3 lies above the base law on every tier) less
the law's own model deviation omega, which the advisor already draws. One family's two stages are all the tables
hold for a GPTQ sweep (Qwen3), so the shift is what that family shows, not a population's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fit.profiles import BITS_SUPPORTED, Rows, tier_obs
from strata.law import linearize, log_neg_log_acc
from strata.profile import Profile, StageShift, point_coef
from strata.stage import BASE, POST_TRAINED, stage_class


def stage_shift(other: Rows, profile: Profile) -> StageShift | None:
    """The shift of the profile's laws on ``other`` (its families' rows of one other stage class), or None when
    they hold no tier observation or span both classes."""
    classes = {stage_class(r.stage) for r in other.rows}
    if len(classes) != 1 or None in classes:
        return None
    kept = other.where(lambda r: r.bits >= BITS_SUPPORTED[0])
    sd: dict[str, float] = {}
    n, models = 0, set()
    for tier, law in profile.tiers.items():
        obs = tier_obs(kept, tier)
        if len(obs) == 0:
            continue
        z, _ = linearize(obs.y_adj, obs.n)
        resid = z - np.asarray(log_neg_log_acc(point_coef(law), obs.params, obs.bits, obs.group, obs.calib))[0]
        omega = float(np.mean(law.draws["omega"])) if law.draws and "omega" in law.draws else 0.0
        sd[tier] = round(float(np.sqrt(max(float(np.mean(resid**2)) - omega**2, 0.0))), 6)
        n += len(obs)
        models |= set(obs.model)
    if not sd:
        return None
    return StageShift(stage=classes.pop() or "", sd=sd, rows=n, models=sorted(models))


def other_stage(stages: Iterable[str]) -> str | None:
    """The stage class a profile fitted on ``stages`` does not cover (None: both, or neither is known)."""
    have = {stage_class(s) for s in stages} - {None}
    if len(have) != 1:
        return None
    return POST_TRAINED if have == {BASE} else BASE
