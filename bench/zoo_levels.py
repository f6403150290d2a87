"""Accuracy by popularity level: how many exposures a zoo model needs to learn a person, per tier.

    python bench/zoo_levels.py examples/models/strata-zoo-25k examples/models/strata-zoo-99k ...

For each model folder (a `calibrate.train` output whose probes record each person's popularity, ``repeats``),
evaluates every probe task of its tier map through the sweep's own evaluator (`calibrate.evaluate.Evaluator`, which
runs lm-eval and keeps its logged samples) and prints raw accuracy per task and popularity level, and each task's
chance-adjusted mean as the tier means use it. A diagnostic for designing the world (docs/zoo.md).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strata.law import normalize


def by_level(model_dir: Path) -> tuple[dict[str, dict[float, list[float]]], dict[str, float], dict[str, str]]:
    """task -> popularity level -> [correct, total]; each task's chance (the tier map's) and tier."""
    from calibrate.evaluate import Evaluator

    ev = Evaluator(model_dir, batch_size=512)
    out: dict[str, dict[float, list[float]]] = {}
    for key, items in ev.item_scores().items():
        levels: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for doc, score in items:
            cell = levels[float(doc.get("repeats", 1))]  # 0.25: seen in one epoch of four
            cell[0] += score
            cell[1] += 1
        out[key] = dict(sorted(levels.items()))
    specs = {k: ev.tier_map.tasks[k] for k in out}
    return out, {k: float(s.chance) for k, s in specs.items()}, {k: str(s.tier) for k, s in specs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    missing = [d for d in args.models if not (d / "training.json").is_file()]
    if missing:  # an unfinished or foreign folder: say so in one line, not with the loader's traceback
        print(f"zoo_levels: {missing[0]} holds no finished calibrate.train model (no training.json)", file=sys.stderr)
        return 2
    for d in args.models:
        res, chance, tier = by_level(d)
        levels = sorted({lvl for t in res.values() for lvl in t})
        print(f"\n{d.name}  (raw accuracy per popularity level, by repeats)")
        print(f"{'task':24} tier " + " ".join(f"{lvl:>6g}" for lvl in levels) + "   chance  adjusted mean")
        for key, by in res.items():
            acc = [by[lvl][0] / by[lvl][1] if lvl in by else float("nan") for lvl in levels]
            total = sum(c for c, _ in by.values()) / sum(n for _, n in by.values())
            print(f"{key:24} {tier[key]:4} " + " ".join(f"{a:6.2f}" for a in acc)
                  + f"   {chance[key]:6.3f}  {float(normalize(total, chance[key])):6.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
