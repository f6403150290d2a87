"""Synthetic data from the model itself: a paper-like grid of configurations (``synthetic_rows``) and counts
drawn at chosen or prior-drawn parameters (``simulate``), for recovery tests, calibration and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fit import bayes
from fit.bayes import DEFAULT_PRIORS, Priors
from fit.data import Design, FitData
from strata.law import TIERS


def simulate(
    data: FitData,
    *,
    seed: int = 0,
    truth: dict[str, Any] | None = None,
    law_form: str = "four_factor",
    likelihood: str = "beta_binomial",
    priors: Priors = DEFAULT_PRIORS,
) -> tuple[FitData, dict[str, np.ndarray]]:
    """Counts drawn from the model itself at data's rows (data.correct is ignored); returns (data, all sites).

    ``truth`` fixes latent sites (e.g. ``tau``, ``sigma``, ``omega``, ``log_phi``) and, under the key
    ``family_laws`` (F, T, d; centred scale, c first), each family's mean task law per tier; everything else is
    drawn from its prior. With no ``truth`` at all this is a draw from the prior (simulation-based calibration).
    """
    import functools

    import jax
    from numpyro import handlers

    truth = dict(truth or {})
    family_laws = truth.pop("family_laws", None)
    design = Design.of(data)
    model = bayes.stratified_law if family_laws is None else functools.partial(_at_family_laws, family_laws)
    model = handlers.seed(handlers.condition(model, data=truth), jax.random.PRNGKey(seed))
    with jax.enable_x64(True):
        trace = handlers.trace(model).get_trace(data, design, law_form=law_form, likelihood=likelihood, priors=priors)
    sites = {
        name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] in ("sample", "deterministic")
    }
    out = FitData(**{**data.__dict__, "correct": sites["correct"].astype(int)})
    return out, sites


def _at_family_laws(
    family_laws: Any, data: FitData, design: Design, *, law_form: str, likelihood: str, priors: Priors
) -> None:
    """The model (fit.bayes.stratified_law) with each family's mean task law per tier fixed at ``family_laws``
    (F, T, d): every column's family laws come from the family chain, observed, and the model effects are drawn
    around the fixed c and alpha; the counts are drawn."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    s = bayes.Structure.of(data, design, law_form, likelihood, priors)
    tau, sigma, omega, log_phi, w = bayes.scale_sites(s)
    fixed = jnp.asarray(family_laws)[..., : s.d]
    m, mu = bayes.family_chain(s.prior_mean, s.prior_sd, tau, w, jnp.asarray(s.centred), fixed)
    pf, pt = jnp.asarray(design.pair_family), jnp.asarray(design.pair_tier)
    with numpyro.plate("pairs", design.n_pairs):
        v_model = numpyro.sample(
            "v_model", dist.Normal(m[pf, pt, 0] + m[pf, pt, 1] * jnp.asarray(design.pair_x), omega[pt])
        )
    bayes.count_sites(s, m, mu, v_model, tau, sigma, w, log_phi, None)


# Task shapes for synthetic data: (name, tier, chance, items), three tasks per tier like the tier map's.
SYNTHETIC_TASKS: tuple[tuple[str, str, float, int], ...] = (
    ("triviaqa", "KM", 0.0, 17944),
    ("nq_open", "KM", 0.0, 3610),
    ("truthfulqa_mc1", "KM", 0.25, 817),
    ("mmlu", "KA", 0.25, 14042),
    ("hellaswag", "KA", 0.25, 10042),
    ("arc_easy", "KA", 0.25, 2376),
    ("gsm8k", "KR", 0.0, 1319),
    ("arc_challenge", "KR", 0.25, 1172),
    ("strategyqa", "KR", 0.5, 2290),
)
SYNTHETIC_FAMILIES: dict[str, tuple[float, ...]] = {
    "qwen3": (0.6e9, 1.7e9, 4e9, 8e9, 14e9),
    "llama3": (1e9, 3e9, 8e9),
}


def synthetic_rows(
    num_configs: int = 300,
    *,
    tasks_per_tier: int = 3,
    tiers: Sequence[str] = TIERS,
    families: dict[str, tuple[float, ...]] | None = None,
    bits: Sequence[float] = (3, 4, 8),
    group_sizes: Sequence[float] = (32, 64, 128, 1024),
    calib_samples: Sequence[float] = (8, 32, 128, 1024),
    seed: int = 0,
) -> FitData:
    """A paper-like grid: ``num_configs`` (model, B, G, Cb) configurations drawn without replacement, each
    evaluated on ``tasks_per_tier`` tasks of every tier. Counts are zero; fill them with ``simulate``."""
    rng = np.random.default_rng(seed)
    families = families or SYNTHETIC_FAMILIES
    grid = [
        (f, n, b, g, c)
        for f, sizes in families.items()
        for n in sizes
        for b in bits
        for g in group_sizes
        for c in calib_samples
    ]
    if num_configs > len(grid):
        raise ValueError(f"the grid has only {len(grid)} configurations")
    configs = [grid[i] for i in sorted(rng.choice(len(grid), size=num_configs, replace=False))]
    tasks = [t for tier in tiers for t in [s for s in SYNTHETIC_TASKS if s[1] == tier][:tasks_per_tier]]
    rows = [(cfg, task) for cfg in configs for task in tasks]
    return FitData.from_records(
        params=[c[1] for c, _ in rows],
        bits=[c[2] for c, _ in rows],
        group_size=[c[3] for c, _ in rows],
        calib_samples=[c[4] for c, _ in rows],
        correct=np.zeros(len(rows), dtype=int),
        n=[t[3] for _, t in rows],
        chance=[t[2] for _, t in rows],
        task=[t[0] for _, t in rows],
        tier=[t[1] for _, t in rows],
        family=[c[0] for c, _ in rows],
        tiers=list(tiers),
    )
