"""Where a sweep's time goes: run a spec into a fresh store, then report seconds per configuration by stage.

    python bench/sweep_stages.py [--spec examples/sweep-tiny.yaml] [--device cpu|cuda]

Stages, from the timings every stored row carries (calibrate/sweep.py): model load (once per model, spread over
its configurations), calibration-set build, GPTQ capture / Hessian accumulation / column solves / propagation
(measured per batch of configurations that share a Cb, divided by the batch size), weight swap, tiered evaluation.
The ratios are against the evaluation of the same configuration, measured in the same run; peak memory is reported.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate.spec import load_spec  # noqa: E402
from calibrate.store import Store  # noqa: E402
from calibrate.sweep import run_sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(ROOT / "examples" / "sweep-tiny.yaml"))
    ap.add_argument("--device", default=None, help="override the spec's device")
    args = ap.parse_args()

    spec = load_spec(args.spec)
    if args.device:
        spec = spec.model_copy(update={"device": args.device})
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "bench.sqlite"
        start = time.perf_counter()
        summary = run_sweep(spec, store_path=store_path)
        wall = time.perf_counter() - start
        with Store.open(store_path) as store:
            rows = list(store.rows())

    configs: dict[tuple, dict] = {}
    for r in rows:  # one timing record per configuration (all its task rows carry the same one)
        configs[(r.model, r.method, r.bits, r.group_size, r.calib_samples, r.calib_seed)] = r.extra["timings"]
    per_model: dict[str, int] = defaultdict(int)
    for key in configs:
        per_model[key[0]] += 1

    stages = ["model_load", "calibration", "capture", "hessian", "solve", "propagate", "swap", "evaluate"]
    totals: dict[str, list[float]] = defaultdict(list)
    for key, t in configs.items():
        batch = t.get("quantize_batch", 1) or 1
        totals["model_load"].append(t.get("model_load_s", 0.0) / per_model[key[0]])
        totals["calibration"].append(t.get("calibration_s", 0.0) / batch)
        for s in ("capture", "hessian", "solve", "propagate"):
            totals[s].append(t.get(f"quantize_{s}_s", 0.0) / batch)
        totals["swap"].append(t.get("swap_s", 0.0))
        totals["evaluate"].append(t.get("evaluate_s", 0.0))

    n = len(configs)
    print(f"spec {spec.name}: {n} configurations ({summary.ran} run), device {spec.device}, wall {wall:.1f} s")
    print(f"wall per configuration: {wall / max(n, 1):.2f} s")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    line = f"peak host memory (RSS): {peak_rss:.2f} GiB"
    if spec.device.startswith("cuda"):
        import torch

        line += f"; peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    print(line)
    ev = statistics.mean(totals["evaluate"]) or float("nan")
    print(f"{'stage':<12} {'s/config':>9} {'share':>7} {'x evaluate':>11}")
    accounted = sum(statistics.mean(v) for v in totals.values())
    for s in stages:
        mean = statistics.mean(totals[s])
        print(f"{s:<12} {mean:9.3f} {mean / accounted:7.1%} {mean / ev:11.2f}")
    print(f"{'accounted':<12} {accounted:9.3f}  (the rest of the wall time: planning, store commits, Python)")


if __name__ == "__main__":
    main()
