"""Write advisor/data/baselines.json: the published unquantized (FP16/BF16) accuracies of models, per task.

    python scripts/make_baselines.py [--published DIR] [--out advisor/data/baselines.json]

The advisor conditions its predictions on a model's own unquantized scores; these are the defaults it uses when a
user gives none. One entry per published model (its id as printed, lower-cased), each task once: the first table
of the first source that prints it (sources in file-name order, tables in file order), with the metric and shots it
was measured with, under the name of the law it measures (``arc_challenge:acc_norm``: ``strata.metric.law_task``). Only
accuracy-type metrics (acc, acc_norm, exact_match, as ``calibrate.published.stored_metric`` reads them);
leaderboard-normalized scores, averages and perplexities are left out. Items per task come from the tier map.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", type=Path, default=ROOT / "calibrate" / "data" / "published")
    ap.add_argument("--out", type=Path, default=ROOT / "advisor" / "data" / "baselines.json")
    args = ap.parse_args()

    import sys

    sys.path.insert(0, str(ROOT))
    from calibrate.published import stored_metric
    from strata.metric import law_task
    from strata.tiermap import load_tier_map

    tmap = load_tier_map()
    models: dict[str, dict] = {}
    for path in sorted(args.published.glob("*.csv")):
        with path.open(newline="") as f:
            for rec in csv.DictReader(f):
                if "method" not in rec or rec["method"] not in ("FP16", "BF16") or "SUSPECT" in rec.get("note", ""):
                    continue
                key = rec["task"].strip()
                task = tmap.resolve(key) or key
                spec = tmap.tasks.get(task)
                metric = stored_metric(rec["metric"].strip(), spec.metric if spec else None)
                if metric is None:
                    continue
                entry = models.setdefault(
                    rec["model"].strip().lower(),
                    {"model": rec["model"].strip(), "family": rec["model_family"], "stage": rec["model_stage"],
                     "params_b": float(rec["params_b"]), "tasks": {}},
                )  # fmt: skip
                if law_task(task, metric) in entry["tasks"]:
                    continue
                entry["tasks"][law_task(task, metric)] = {
                    "mean": round(float(rec["value"]) / 100.0, 6),
                    **({"n": spec.items} if spec is not None and spec.items else {}),
                    "metric": metric,
                    "n_shot": int(rec["n_shot"]) if rec.get("n_shot", "").strip() else None,
                    "source": f"{rec['source']} {rec['table']}".strip(),
                }
    out = {
        "schema_version": 1,
        "command": "python scripts/make_baselines.py",
        "about": "published unquantized accuracies (FP16/BF16 rows of calibrate/data/published), per task and metric",
        "models": dict(sorted(models.items())),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.out}: {len(models)} models, {sum(len(m['tasks']) for m in models.values())} task baselines")


if __name__ == "__main__":
    main()
