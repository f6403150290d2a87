"""Does the zoo show what issue 15 asks of it? A report over the zoo sweep's store (nothing is recomputed).

    python bench/zoo_report.py [--store examples/sweep-zoo.sqlite] [--models examples/models] [--markdown FILE]

Reads every row of the store (`calibrate sweep examples/sweep-zoo.yaml` writes it, resumably) and each model's
``training.json``, and prints:

1. per model, by block (non-embedding) parameters: training tokens, seconds and tokens/s; the unquantized
   chance-adjusted tier means with their binomial standard errors. Bar: every mean in [0.3, 0.95], rising with N
   on every tier.
2. the drop at 3 bits per channel, in points of raw accuracy, averaged over every Cb and calibration seed stored.
   Bar: at least 3 points on at least two tiers for the two smallest models.
3. the largest effect of G (other factors fixed) and of Cb (other factors fixed) on a tier's raw accuracy, in units
   of the binomial standard error of the difference, over B >= 3 and over all B. Bar: each above 2.
4. time per configuration (quantize + evaluate), per model.

Each bar prints PASS or FAIL; a store that lacks the rows a bar needs prints MISSING for it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate.store import open_store  # noqa: E402
from strata.law import normalize  # noqa: E402
from strata.rows import ResultRow  # noqa: E402

TIERS = ("KM", "KA", "KR")


def _tiers(rows: list[ResultRow]) -> dict[str, tuple[float, float, int]]:
    """tier -> (raw accuracy, chance, items), pooling the tier's tasks' items."""
    by: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        if r.tier in TIERS and r.correct is not None and r.n_items:
            by[r.tier].append(r)
    out = {}
    for tier, rs in by.items():
        n = sum(r.n_items or 0 for r in rs)
        out[tier] = (sum(r.correct or 0 for r in rs) / n, mean(r.chance or 0.0 for r in rs), n)
    return out


def _adjusted_float(acc: float, chance: float) -> float:
    return float(normalize(acc, chance))


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def report(store: Path, models_dir: Path) -> tuple[str, bool]:
    with open_store(store, create=False) as st:
        rows = list(st.rows())
    by_config: dict[tuple[Any, ...], list[ResultRow]] = defaultdict(list)
    for r in rows:
        key = (r.model, r.bits if r.group_size is not None else None, r.group_size, r.calib_samples, r.calib_seed)
        by_config[key].append(r)
    size = {r.model: r.params_nonembed_b or r.params_b for r in rows}
    models = sorted(size, key=lambda m: size[m])
    lines: list[str] = []
    ok = True

    def bar(name: str, passed: bool | None, detail: str) -> None:
        nonlocal ok
        verdict = "MISSING" if passed is None else ("PASS" if passed else "FAIL")
        ok = ok and bool(passed)
        lines.append(f"**{verdict}** {name}: {detail}")
        lines.append("")

    # 1. unquantized
    head = "| model | block params | train tokens | train s | tokens/s | " + " | ".join(f"{t} adj ±SE" for t in TIERS)
    lines += ["## Unquantized", "", head + " |", "|---|---:|---:|---:|---:|" + "---:|" * 3]
    ref: dict[str, dict[str, tuple[float, float, int]]] = {}
    for m in models:
        refs = by_config.get((m, None, None, None, None))
        rec_path = models_dir / m / "training.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        cells = ["–"] * 3
        if refs:
            ref[m] = _tiers(refs)
            cells = []
            for t in TIERS:
                acc, ch, n = ref[m][t]
                cells.append(f"{_adjusted_float(acc, ch):.3f} ± {_se(acc, n) / (1 - ch):.3f}")
        lines.append(
            f"| {m} | {size[m] * 1e9:,.0f} | {rec.get('train_tokens', 0):,} | {rec.get('seconds', '–')} | "
            f"{rec.get('tokens_per_s', '–')} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    if len(ref) == len(models) and models:
        adj = {m: {t: _adjusted_float(ref[m][t][0], ref[m][t][1]) for t in TIERS} for m in models}
        in_band = all(0.3 <= adj[m][t] <= 0.95 for m in models for t in TIERS)
        rising = all(adj[a][t] < adj[b][t] for t in TIERS for a, b in itertools.pairwise(models))
        values = [v for d in adj.values() for v in d.values()]
        bar("unquantized tier means in [0.3, 0.95]", in_band, f"min {min(values):.3f}, max {max(values):.3f}")
        bar("rising with N on every tier", rising, "; ".join(
            f"{t}: " + " < ".join(f"{adj[m][t]:.3f}" for m in models) for t in TIERS))  # fmt: skip
    else:
        bar("unquantized tier means", None, "no reference rows for some model")

    # 2. 3-bit per-channel drop (raw points), averaged over Cb and seeds
    lines += ["## 3 bits per channel: drop in points of raw accuracy (mean over Cb and seeds)", "",
              "| model | configs | " + " | ".join(TIERS) + " |", "|---|---:|" + "---:|" * 3]  # fmt: skip
    drops: dict[str, dict[str, float]] = {}
    for m in models:
        cfgs = [v for k, v in by_config.items() if k[0] == m and k[1] == 3 and k[2] == -1]
        if not cfgs or m not in ref:
            continue
        per = [_tiers(c) for c in cfgs]
        drops[m] = {t: 100 * (ref[m][t][0] - mean(p[t][0] for p in per)) for t in TIERS}
        lines.append(f"| {m} | {len(cfgs)} | " + " | ".join(f"{drops[m][t]:.1f}" for t in TIERS) + " |")
    lines.append("")
    small = models[:2]
    if all(m in drops for m in small) and small:
        passed = all(sum(drops[m][t] >= 3 for t in TIERS) >= 2 for m in small)
        bar("3-bit per-channel drop >= 3 points on >= 2 tiers, two smallest models", passed, ", ".join(small))
    else:
        bar("3-bit per-channel drop", None, "no 3-bit per-channel rows for the two smallest models")

    # 3. G and Cb effects, other factors fixed
    lines += ["## Largest effect of one factor, other factors fixed (|difference| / SE of the difference)", ""]
    for factor, index in (("G", 2), ("Cb", 3)):
        for label, bmin in (("B >= 3", 3), ("any B", 2)):
            groups: dict[tuple[Any, ...], list[tuple[Any, dict[str, tuple[float, float, int]]]]] = defaultdict(list)
            for k, v in by_config.items():
                if k[1] is None or k[1] < bmin:
                    continue
                rest = tuple(x for i, x in enumerate(k) if i != index)
                groups[rest].append((k[index], _tiers(v)))
            best = (0.0, "")
            for rest, members in groups.items():
                for t in TIERS:
                    vals = [(lvl, tr[t]) for lvl, tr in members if t in tr]
                    for i, (la, (pa, _, na)) in enumerate(vals):
                        for lb, (pb, _, nb) in vals[i + 1 :]:
                            z = abs(pa - pb) / math.sqrt(_se(pa, na) ** 2 + _se(pb, nb) ** 2)
                            if z > best[0]:
                                other = "Cb" if index == 2 else "G"
                                where = f"{rest[0]} B={rest[1]:g} {other}={rest[2]} seed={rest[3]}"
                                best = (z, f"{t}, {where}: {factor}={la} {pa:.3f} vs {factor}={lb} {pb:.3f}")
            lines += [f"- {factor}, {label}: {best[0]:.1f} SE ({best[1] or 'no pairs'})", ""]
            if label == "B >= 3":
                found = best[0] > 2 if best[1] else None
                bar(f"{factor} moves some tier by > 2 SE (B >= 3)", found, f"{best[0]:.1f} SE")
    # 4. time per configuration
    lines += ["## Time per configuration", "", "| model | configs | quantize + evaluate, s (mean) |", "|---|---:|---:|"]
    for m in models:
        secs = []
        for k, v in by_config.items():
            if k[0] != m or k[1] is None:
                continue
            t = v[0].extra.get("timings", {})
            q = sum(val for name, val in t.items() if name.startswith("quantize_") and name.endswith("_s"))
            q /= max(1, t.get("quantize_batch", 1))  # configurations quantized together share the pass
            secs.append(q + t.get("evaluate_s", 0.0) + t.get("swap_s", 0.0))
        if secs:
            lines.append(f"| {m} | {len(secs)} | {mean(secs):.1f} |")
    lines.append("")
    return "\n".join(lines), ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "examples" / "sweep-zoo.sqlite"))
    ap.add_argument("--models", default=str(ROOT / "examples" / "models"))
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    text, ok = report(Path(args.store), Path(args.models))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
