"""Benchmark (not a test): NUTS and SVI on ~300 simulated configurations x 3 tiers, on this machine.

    .venv/bin/python bench/fit_speed.py [--configs 300] [--tasks-per-tier 1] [--warmup 400] [--samples 600]

Counts are simulated from the model itself (fit.synthetic.simulate) at paper-like laws. Prints wall seconds for
NUTS (two chains, in parallel on two host devices, compilation included) and SVI (compilation included), their
ratio, and NUTS's R-hat max, min ESS and divergences, and the SVI convergence check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fit.cli import fixed_hash_seed

fixed_hash_seed(sys.argv)  # as the `fit` CLI does: cacheable SVI programs

import numpyro  # noqa: E402

numpyro.set_host_device_count(2)

import numpy as np  # noqa: E402

from fit import infer, synthetic  # noqa: E402
from strata.profile import NutsSettings, SviSettings  # noqa: E402

FAMILY_SHIFT = [0.2, 0.04, -0.1, 0.01, -0.01]  # llama3's laws relative to qwen3's (centred scale)
TRUE_MU = [[0.0, -0.36, -1.07, -0.04, 0.07], [-0.3, -0.40, -1.07, -0.03, 0.07], [0.3, -0.36, -1.28, -0.03, 0.085]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=300)
    ap.add_argument("--tasks-per-tier", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--svi-steps", type=int, default=4000)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--skip-svi", action="store_true")
    args = ap.parse_args()

    data = synthetic.synthetic_rows(args.configs, tasks_per_tier=args.tasks_per_tier, seed=0)
    truth = {
        "family_laws": np.array([TRUE_MU, np.add(TRUE_MU, FAMILY_SHIFT)]),
        "tau": np.array([0.3, 0.05, 0.15, 0.02, 0.02]),
        "sigma": np.array([0.5, 0.05, 0.15, 0.02, 0.02]),
        "omega": np.full(3, 0.1),
        "log_phi": np.log(np.full(3, 300.0)),
    }
    data, _ = synthetic.simulate(data, seed=1, truth=truth)
    print(f"{args.configs} configurations x 3 tiers x {args.tasks_per_tier} task(s) = {len(data)} rows")

    if not args.skip_svi:
        t = time.perf_counter()
        svi = infer.run_svi(data, SviSettings(steps=args.svi_steps))
        svi_s = time.perf_counter() - t
        print(f"SVI  {svi_s:7.1f} s  ({args.svi_steps} steps, compilation included)  {svi.diagnostics.svi}")

    t = time.perf_counter()
    settings = NutsSettings(
        warmup=args.warmup,
        samples=args.samples,
        target_accept=0.9,
        dense_mass=args.dense,
        max_tree_depth=args.depth,
    )
    nuts = infer.run_nuts(data, settings)
    nuts_s = time.perf_counter() - t
    d = nuts.diagnostics
    print(f"NUTS {nuts_s:7.1f} s  (2 chains x {args.warmup}+{args.samples}, compilation included)")
    print(f"     R-hat max {max(d.r_hat.values()):.3f}  min ESS {min(d.ess.values()):.0f}  divergences {d.divergences}")
    print(f"     per group: r_hat {d.r_hat}  ess {d.ess}  mean steps {d.mean_steps:.1f}")
    print(f"     gate: {'PASS' if not d.problems() else '; '.join(d.problems())}")


if __name__ == "__main__":
    main()
