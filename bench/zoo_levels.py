"""Accuracy by popularity level: how many exposures a zoo model needs to learn a person, per tier.

    python bench/zoo_levels.py examples/models/zoo-25k examples/models/zoo-99k ...

For each model folder (a `calibrate.train` output whose probes record each person's popularity, ``repeats``), scores
the three multiple-choice probes the way lm-eval does (summed log-likelihood of each choice after the query, the
choice joined by a space) and prints raw accuracy per tier and popularity level, and the chance-adjusted tier
means. A diagnostic for designing the world (docs/zoo.md), not the sweep's evaluator: the sweep goes through
lm-eval (`calibrate sweep`), and this script agrees with it on the tier means it also prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

TIERS = {"KM": "strata_world_km", "KA": "strata_world_ka", "KR": "strata_world_kr"}


def score(model_dir: Path) -> dict[str, dict[int, list[int]]]:
    """tier -> popularity level -> [correct, total]."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out: dict[str, dict[int, list[int]]] = {}
    for tier, task in TIERS.items():
        rows = [json.loads(line) for line in (model_dir / "tasks" / f"{task}.jsonl").read_text().splitlines()]
        seqs, spans = [], []
        for row in rows:
            ctx = tok(row["query"])["input_ids"]
            for choice in row["choices"]:
                cont = tok(row["query"] + " " + choice)["input_ids"][len(ctx) :]
                seqs.append(ctx + cont)
                spans.append((len(ctx), len(ctx) + len(cont)))
        lls = []
        with torch.no_grad():
            for i in range(0, len(seqs), 512):
                chunk, sp = seqs[i : i + 512], spans[i : i + 512]
                width = max(map(len, chunk))
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                for r, s in enumerate(chunk):
                    ids[r, : len(s)] = torch.tensor(s)
                logp = torch.log_softmax(model(ids).logits.float(), -1)
                for r, (a, b) in enumerate(sp):
                    tgt = ids[r, a:b]
                    lls.append(logp[r, a - 1 : b - 1].gather(-1, tgt[:, None]).sum().item())
        levels: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        k = 0
        for row in rows:
            n = len(row["choices"])
            best = max(range(n), key=lambda j: lls[k + j])
            k += n
            cell = levels[int(row.get("repeats", 1))]
            cell[0] += best == row["gold"]
            cell[1] += 1
        out[tier] = dict(sorted(levels.items()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    missing = [d for d in args.models if not (d / "training.json").is_file()]
    if missing:  # an unfinished or foreign folder: say so in one line, not with the loader's traceback
        print(f"zoo_levels: {missing[0]} holds no finished calibrate.train model (no training.json)", file=sys.stderr)
        return 2
    for d in args.models:
        res = score(d)
        levels = sorted({lvl for t in res.values() for lvl in t})
        print(f"\n{d.name}  (raw accuracy per popularity level; chance 0.25)")
        print("tier  " + " ".join(f"{lvl:>6}" for lvl in levels) + "   adjusted mean")
        for tier, by in res.items():
            acc = [by[lvl][0] / by[lvl][1] if lvl in by else float("nan") for lvl in levels]
            total = sum(c for c, _ in by.values()) / sum(n for _, n in by.values())
            print(f"{tier:4}  " + " ".join(f"{a:6.2f}" for a in acc) + f"   {(total - 0.25) / 0.75:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
