"""Evaluation throughput as a fraction of the plain forward-pass throughput of the same model on the same device.

    python bench/eval_throughput.py [--model examples/models/strata-world-s] [--device cpu|cuda] [--repeats 3]

The tiered evaluation (``calibrate.evaluate.Evaluator``: lm-eval's evaluator on the in-memory model) scores every
(context, continuation) request of every task. The baseline runs exactly those token sequences (context +
continuation, minus the last token, as lm-eval feeds them) through ``model(...)`` in batches of the same size,
sorted by length as lm-eval sorts them, under ``torch.no_grad`` — the floor any evaluator pays. The fraction says
how much of the evaluation's time is the model's own work; the rest is lm-eval's request building, tokenization,
log-softmax and bookkeeping. Both are measured in the same process, medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from calibrate.evaluate import Evaluator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "examples" / "models" / "strata-world-s"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ev = Evaluator(args.model, device=args.device, batch_size=args.batch_size)
    seqs: list[list[int]] = []
    for task in ev.loaded["tasks"].values():
        task.build_all_requests(rank=0, world_size=1)
        for inst in task.instances:
            context, continuation = inst.args
            ids = ev.lm.tok_encode(context) + ev.lm.tok_encode(continuation)
            seqs.append(ids[-(ev.lm.max_length + 1) :][:-1])
    seqs.sort(key=len, reverse=True)
    tokens = sum(len(s) for s in seqs)
    device = torch.device(args.device)
    pad = ev.tokenizer.pad_token_id or 0

    def forward_all() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(seqs), args.batch_size):
                batch = seqs[i : i + args.batch_size]
                width = len(batch[0])
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, s in enumerate(batch):
                    ids[r, : len(s)] = torch.tensor(s)
                    mask[r, : len(s)] = 1
                ev.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def evaluate_all() -> float:
        start = time.perf_counter()
        ev.evaluate()
        return time.perf_counter() - start

    forward_all()  # warm-up (allocator, kernels)
    evaluate_all()
    fwd = statistics.median(forward_all() for _ in range(args.repeats))
    evl = statistics.median(evaluate_all() for _ in range(args.repeats))
    items = sum(ev.sizes.values())
    print(f"model {Path(args.model).name} on {args.device}, batch {args.batch_size}, threads {torch.get_num_threads()}")
    print(f"{items} items, {len(seqs)} requests, {tokens} tokens")
    print(f"plain forward : {fwd:7.3f} s  {tokens / fwd:10.0f} tokens/s")
    print(f"evaluation    : {evl:7.3f} s  {tokens / evl:10.0f} tokens/s  ({items / evl:.0f} items/s)")
    print(f"evaluation throughput = {fwd / evl:.1%} of the plain forward pass ({evl / fwd:.2f}x its time)")


if __name__ == "__main__":
    main()
