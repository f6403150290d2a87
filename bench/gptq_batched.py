"""GPTQ stage, C configurations at once vs one configuration at a time, measured in one run.

    python bench/gptq_batched.py [--device cpu|cuda] [--rows R --cols K] [--samples N --seqlen L] [--threads T]

Two measurements, each the median of ``--repeat`` runs after a warm-up:
- a synthetic layer (R x K weight, a correlated-input Hessian): ``gptq()`` for all C configurations in one call, vs
  C calls of one configuration, with one shared Hessian and with one Hessian per configuration;
- the shipped strata-world-s (3 blocks, hidden 96) quantized whole by ``quantize_model`` (true-sequential,
  quantized propagation, per-configuration streams), all C configurations in one call vs one call per
  configuration, with the stage timings of the batched call.
On a busy CPU, multithreaded kernels on tiny tensors spin against other processes (a strata-world-s block
forward measured 0.38 s with 2 threads vs 0.03 s with 1 on a loaded 2-core machine): ``--threads 1`` is steadier.
The grid is bits x group sizes (default 2,3,4,8 x 16,32,48,per-channel: 16 configurations; every group size must
divide the model's input widths, 96 and 288 for strata-world-s; on the synthetic layer a last partial group is
its own group). On cuda, peak device memory is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from calibrate import world
from calibrate.gptq import QuantConfig, gptq, hessian
from calibrate.sequential import quantize_model

ROOT = Path(__file__).resolve().parents[1]
S = ROOT / "examples" / "models" / "strata-world-s"


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def median_seconds(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    fn()  # warm-up: allocator, kernels, lazy imports
    times = []
    for _ in range(repeat):
        t0 = clock(device)
        fn()
        times.append(clock(device) - t0)
    return statistics.median(times)


def peak(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    gib = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return f"  peak {gib:.2f} GiB"


def synthetic(configs: list[QuantConfig], rows: int, cols: int, device: torch.device, repeat: int) -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(cols, cols, generator=g) / cols**0.5 * torch.logspace(0, -2, cols)[:, None]
    X = (torch.randn(4 * cols, cols, generator=g) @ basis).to(device)
    W = torch.randn(rows, cols, generator=g).to(device)
    H = hessian(X)
    Hs = torch.stack([hessian(X + 0.01 * c) for c in range(len(configs))])  # one (different) Hessian each
    C = len(configs)
    print(f"synthetic layer {rows} x {cols}, {C} configurations, {device}")
    for label, shared in (("shared H", True), ("H per config", False)):

        def together_fn(shared: bool = shared) -> None:
            gptq(W, H if shared else Hs, configs)

        def alone_fn(shared: bool = shared) -> None:
            for c, cfg in enumerate(configs):
                gptq(W, H if shared else Hs[c], [cfg])

        together = median_seconds(together_fn, device, repeat)
        mem = peak(device)
        alone = median_seconds(alone_fn, device, repeat)
        print(
            f"  {label:<13} batched {together:8.3f} s ({together / C:.4f} s/config){mem}   one at a time "
            f"{alone:8.3f} s ({alone / C:.4f} s/config)   ratio {alone / together:5.2f}x"
        )


def model_level(configs: list[QuantConfig], samples: int, seqlen: int, device: torch.device, repeat: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(S, dtype=torch.float32)
    model = model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(S)
    ids = torch.tensor(tok(" ".join(world.corpus(world.generate())))["input_ids"][: samples * seqlen])
    ids = ids.reshape(samples, seqlen).to(device)
    C = len(configs)
    stages: dict[str, float] = {}

    def batched() -> None:
        stages.update(quantize_model(model, ids, configs, batch_size=samples)[1])

    print(f"strata-world-s ({sum(p.numel() for p in model.parameters()):,} params), Cb = {samples} x {seqlen}, "
          f"{C} configurations, {device}")  # fmt: skip
    together = median_seconds(batched, device, repeat)
    mem = peak(device)
    alone = median_seconds(
        lambda: [quantize_model(model, ids, [cfg], batch_size=samples) for cfg in configs], device, repeat
    )
    print(
        f"  quantize_model batched {together:8.3f} s ({together / C:.4f} s/config){mem}   one at a time "
        f"{alone:8.3f} s ({alone / C:.4f} s/config)   ratio {alone / together:5.2f}x"
    )
    print("  batched stages (last run): " + ", ".join(f"{k} {v:.3f} s" for k, v in stages.items()))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--bits", default="2,3,4,8")
    p.add_argument("--groups", default="16,32,48,-1")
    p.add_argument("--rows", type=int, default=None, help="synthetic layer rows (default 512 on cpu, 4096 on cuda)")
    p.add_argument("--cols", type=int, default=None, help="synthetic layer columns (default as rows)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seqlen", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 is steadier on a shared machine)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    configs = [QuantConfig(int(b), int(g)) for b in a.bits.split(",") for g in a.groups.split(",")]
    rows = a.rows or (4096 if device.type == "cuda" else 512)
    cols = a.cols or (rows if a.rows else (4096 if device.type == "cuda" else 512))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    synthetic(configs, rows, cols, device, a.repeat)
    if not a.skip_model:
        model_level(configs, a.samples, a.seqlen, device, a.repeat)


if __name__ == "__main__":
    main()
