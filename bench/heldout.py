"""How well `advisor predict` does on published GPTQ rows its profile never saw, with and without the baseline.

    python bench/heldout.py [--published calibrate/data/published] [--markdown FILE]

For every published GPTQ accuracy row (not SUSPECT, any accuracy metric under its law's name,
``arc_challenge:acc_norm``; 2-bit rows in groups of their own) of a model the catalog knows, with an FP16 row of the
same source, model and task: predict it with the shipped profile named for the model's family in PROFILE_OF. A row
is *held out* when its model is not in the profile's data, *in the joint fit* when its family's rows were pooled in
the fit the profile came from but are not the profile's own, of a *new family* when its family is not one of the
profile's (the profile's new-family law answers). Per group of rows: MAE in points of raw accuracy, the share
inside the 90% interval, and how many lie more than 5 points outside it, for

- `advisor, baseline`: conditioned on the row's own FP16 score from the same table (`--baseline`),
- `advisor, no baseline`: the law alone (`--no-baseline`),
- `copy FP16`: predicting no drop at all (the FP16 score, no interval),

so the law must beat "no drop" to be worth anything. Prints a table; `--markdown` also writes it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor import api, catalog, core  # noqa: E402
from advisor.schema import Prediction  # noqa: E402
from calibrate.published import published_csvs, read_published_csv  # noqa: E402
from fit.presets import PRESETS  # noqa: E402
from strata.law import NOMINAL_CALIB_SAMPLES  # noqa: E402
from strata.metric import ACCURACY_METRICS, law_task, metric_base  # noqa: E402
from strata.profile import Profile  # noqa: E402
from strata.rows import ResultRow  # noqa: E402
from strata.tiermap import load_tier_map  # noqa: E402

PROFILE_OF = {"Qwen3": "qwen3", "Llama-2": "llama", "LLaMA-1": "llama", "Llama-3": "llama3", "Mistral": "llama",
              "Qwen1": "qwen3", "Qwen2": "qwen3"}  # fmt: skip


def pooled(profile: Profile, row: ResultRow) -> bool:
    """Whether the joint fit the profile came from pooled rows of this family and stage (its new-family law is
    drawn from their population)."""
    names = profile.new_family.families if profile.new_family is not None else []
    specs = [PRESETS[name] for name in names if name in PRESETS]
    return any(row.family in s.families and (not s.stages or row.stage in s.stages) for s in specs)


def rows(folder: Path) -> list[ResultRow]:
    """Accuracy rows under their law's name (the published reader keeps the metric of each)."""
    tmap = load_tier_map()
    return [
        r.model_copy(update={"task": law_task(r.task, r.metric)})
        for f in published_csvs(folder) for r in read_published_csv(f, tmap)
        if metric_base(r.metric) in ACCURACY_METRICS
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", type=Path, default=ROOT / "calibrate" / "data" / "published")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()

    data = rows(args.published)
    fp16 = {(r.source, r.model, r.task): r for r in data if r.method in ("FP16", "BF16")}
    quant = [
        r for r in data
        if r.method == "GPTQ" and r.bits >= 2 and not r.suspect and r.accuracy is not None
        and (r.source, r.model, r.task) in fp16 and r.group_size is not None and r.family in PROFILE_OF
    ]  # fmt: skip
    results: dict[tuple[str, str], list[tuple[float, float, float | None, float | None]]] = defaultdict(list)
    cache: dict[tuple[str, bool, str], Prediction] = {}
    for r in quant:
        info = catalog.find(r.model)
        if info is None:
            continue
        prof_name = PROFILE_OF[r.family]
        q0 = api._query(info, prof_name, published=False, requested=r.model)
        if r.task not in q0.profile.tasks:
            continue
        held = "in the fit" if r.model in q0.profile.data.models else "held out"
        if held == "held out" and pooled(q0.profile, r):
            held = "in the joint fit"  # the population its new-family law draws from saw this model's rows
        split = f"{prof_name}: {held}" + ("" if r.family in q0.profile.families else f" ({r.family}, new family)")
        split += " · 2-bit" if r.bits < 3 else ""
        base = {
            "tasks": {k[2]: {"mean": v.accuracy} for k, v in fp16.items() if k[:2] == (r.source, r.model)},
            "source": r.source,
        }
        truth = float(r.accuracy)  # type: ignore[arg-type]
        answers = {}
        for mode in ("advisor, baseline", "advisor, no baseline"):
            key = (f"{r.source}|{r.model}|{r.bits}|{r.group_size}|{r.calib_samples}", mode == "advisor, baseline", "")
            if key not in cache:
                q = api._query(info, prof_name, base if key[1] else None, published=False, requested=r.model)
                cb = r.calib_samples or NOMINAL_CALIB_SAMPLES  # a source that states none: the fit's own value
                cache[key] = core.predict(q, r.bits, r.group_size, cb, extrapolate=True)
            answers[mode] = cache[key].tasks.get(r.task)
        if any(t is None for t in answers.values()):
            continue  # a task the advisor does not predict for this model (in no tier, for a new family)
        for mode, t in answers.items():
            assert t is not None
            results[(split, mode)].append((truth, t.point, t.lo, t.hi))
        results[(split, "copy FP16")].append((truth, float(fp16[(r.source, r.model, r.task)].accuracy), None, None))  # type: ignore[arg-type]

    lines = ["| rows | method | n | MAE (points) | 90% coverage | > 5 points outside |", "|---|---|---|---|---|---|"]
    for (split, mode), got in sorted(results.items()):
        a = np.array([(t, m) for t, m, _, _ in got])
        mae = 100 * np.mean(np.abs(a[:, 0] - a[:, 1]))
        if got[0][2] is None:
            cov, far = "-", "-"
        else:
            lo = np.array([x[2] for x in got], float)
            hi = np.array([x[3] for x in got], float)
            t = a[:, 0]
            cov = f"{np.mean((t >= lo) & (t <= hi)):.2f}"
            far = str(int(np.sum((t < lo - 0.05) | (t > hi + 0.05))))
        lines.append(f"| {split} | {mode} | {len(got)} | {mae:.2f} | {cov} | {far} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
