"""GPTQ stage per configuration vs llm-compressor's oneshot GPTQ on the same model, Cb and configurations, one run.

Needs llmcompressor (0.14.0.1 measured) in the running environment — keep it out of the project's own venv (see
bench/gptq_fidelity.py for the install); on a GPU that venv needs a CUDA build of torch:

    HF_HUB_OFFLINE=1 /work/fidelity-venv/bin/python bench/gptq_speed.py --model xs|s|PATH [--samples N --seqlen L]
    HF_HUB_OFFLINE=1 python bench/gptq_speed.py --shape qwen3-1.7b|qwen3-8b [--layers N] --device cuda

The model: a shipped tiny checkpoint (strata-world-xs, strata-world-s, or any local HF decoder checkpoint), or with
``--shape`` a Qwen3 model with the real dimensions of Qwen3-1.7B / Qwen3-8B and random weights (built from a
``Qwen3Config``, nothing downloaded; ``--layers`` cuts its depth for a quick run). Both sides get the same
calibration token ids (Cb x seqlen: the world's text for a checkpoint, seeded random ids for a shape), the same
configurations and llm-compressor's conventions on our side (``true_sequential=False, static_groups=True,
propagate="quantized"``, damping 0.01, block 128, no act-order; see bench/gptq_fidelity.py), so the work is equal:
the printed equal-weight share checks it.

- llm-compressor: one ``oneshot`` call per configuration — the naive per-configuration cost, calibration forward
  passes + solve + propagation each time — on a fresh copy of the original model (copied outside the clock; the
  import is done before). Its defaults otherwise (sequential pipeline, activations offloaded to the CPU between
  subgraphs); ``--batch-size`` is given to both sides (default Cb: one batch).
- ours: one ``quantize_model`` call for all configurations, with its stage split; and, for reference, one call per
  configuration (``--no-alone`` skips it).
Printed: seconds in total and per configuration for each, the ratio (llm-compressor s/config / ours s/config), peak
resident memory per phase (VmHWM, reset before each phase) and, on cuda, peak allocated device memory.
The default grid is bits 2,3,4,8 x three group sizes + per-channel (16 configurations): 32, 64, 128 where they
divide every block linear's input width, else the largest divisors of those widths up to 128 (strata-world-xs,
widths 64/192: 16, 32, 64; strata-world-s, widths 96/288: 32, 48, 96). A busy CPU runs tiny tensors steadier with
``--threads 1`` (see bench/gptq_batched.py).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import io
import math
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from calibrate import world
from calibrate.gptq import QuantConfig
from calibrate.sequential import quantize_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"xs": ROOT / "examples/models/strata-world-xs", "s": ROOT / "examples/models/strata-world-s"}
# The published configs' dimensions (Qwen/Qwen3-1.7B, Qwen/Qwen3-8B config.json).
SHAPES: dict[str, dict[str, Any]] = {
    # not a published model: the smallest Qwen3 that exercises every path (bench/gpu.sh --tiny, on a CPU)
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "tie_word_embeddings": True,
    },
    "qwen3-1.7b": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": True,
    },
    "qwen3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
    },
}
MATCHED: dict[str, Any] = {
    "true_sequential": False,
    "static_groups": True,
    "propagate": "quantized",
    "act_order": False,
    "damp": 0.01,
    "block_size": 128,
}


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


class Peak:
    """Peak resident memory (VmHWM, reset through /proc/self/clear_refs), on cuda peak allocated memory, and the
    process's CPU seconds (all threads) over the measured spans: beside wall-clock time on a shared machine."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss = self.cuda = self.cpu = self._cpu0 = 0.0

    def reset(self) -> None:
        self._cpu0 = time.process_time()
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def take(self) -> None:
        self.cpu += time.process_time() - self._cpu0
        self.rss = max(self.rss, _status_kib("VmHWM") / 2**20)
        if self.device.type == "cuda":
            self.cuda = max(self.cuda, torch.cuda.max_memory_allocated(self.device) / 2**30)

    def __str__(self) -> str:
        cuda = f", cuda max allocated {self.cuda:.2f} GiB" if self.cuda else ""
        return f"CPU {self.cpu:.2f} s, peak RSS {self.rss:.2f} GiB{cuda}"


def build(a: argparse.Namespace, dtype: torch.dtype) -> tuple[Any, str]:
    """The original model on the CPU (never quantized in place), and its label."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    if a.shape:
        dims = SHAPES[a.shape] | ({"num_hidden_layers": a.layers} if a.layers else {})
        cfg = Qwen3Config(vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6, **dims)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        # oneshot reads the config and a processor from the model's path: a folder with the config and, as a
        # stand-in (the ids come tokenized, it only collates them), strata-world-xs's tokenizer.
        folder = tempfile.mkdtemp(prefix="gptq_speed_")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        model.config.save_pretrained(folder)
        AutoTokenizer.from_pretrained(MODELS["xs"]).save_pretrained(folder)
        model.name_or_path = model.config._name_or_path = folder
        return model.eval(), f"{a.shape}-shaped ({dims['num_hidden_layers']} layers, random weights)"
    path = MODELS.get(a.model, Path(a.model))
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), path.name


def calibration_ids(a: argparse.Namespace, model: Any) -> torch.Tensor:
    """Cb x seqlen token ids: the world's text for a checkpoint, seeded random ids for a random-weight shape."""
    n = a.samples * a.seqlen
    if a.shape:
        return torch.randint(model.config.vocab_size, (a.samples, a.seqlen), generator=torch.Generator().manual_seed(0))
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(MODELS.get(a.model, Path(a.model)))(" ".join(world.corpus(world.generate())))
    if len(ids["input_ids"]) < n:
        raise SystemExit(f"the world's text has {len(ids['input_ids'])} tokens, fewer than {a.samples} x {a.seqlen}")
    return torch.tensor(ids["input_ids"][:n]).reshape(a.samples, a.seqlen)


def default_groups(model: Any) -> list[int]:
    """32, 64, 128 where they divide every block linear's input width, else the largest such divisors <= 128."""
    widths = {m.in_features for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "layers." in n}
    g = math.gcd(*widths)
    chosen = [s for s in (32, 64, 128) if g % s == 0]
    chosen += [d for d in range(min(g, 128), 7, -1) if g % d == 0 and d not in chosen][: 3 - len(chosen)]
    return sorted(chosen)


def label(cfg: QuantConfig) -> str:
    return f"W{cfg.bits} g{cfg.group_size if cfg.group_size > 0 else 'ch'}{' sym' if cfg.sym else ''}"


def library_call(model: Any, ids: torch.Tensor, cfg: QuantConfig, batch_size: int, quiet: bool) -> float:
    """Seconds of one llm-compressor ``oneshot`` GPTQ call for one configuration; ``model`` is quantized in place."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier

    scheme = {"num_bits": cfg.bits, "type": "int", "symmetric": cfg.sym}
    scheme |= {"strategy": "group", "group_size": cfg.group_size} if cfg.group_size > 0 else {"strategy": "channel"}
    recipe = GPTQModifier(
        ignore=["lm_head"],
        actorder=None,
        dampening_frac=MATCHED["damp"],
        block_size=MATCHED["block_size"],
        config_groups={"g0": {"targets": ["Linear"], "weights": scheme}},
    )
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    bars = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()  # its tqdm bars
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), bars:  # whatever it writes stays in tmp
        t0 = time.perf_counter()
        oneshot(
            model=model,
            dataset=data,
            recipe=recipe,
            num_calibration_samples=len(ids),
            max_seq_length=ids.shape[1],
            batch_size=batch_size,
            shuffle_calibration_samples=False,
        )
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def equal_share(model: Any, weights: dict[str, torch.Tensor]) -> float:
    modules = dict(model.named_modules())
    same = sum((modules[n].weight.detach().cpu() == w.cpu()).sum().item() for n, w in weights.items())
    return same / sum(w.numel() for w in weights.values())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="xs", help="xs, s (the shipped tiny checkpoints) or a local checkpoint path")
    p.add_argument("--shape", choices=sorted(SHAPES), help="a random-weight Qwen3 of this shape instead of --model")
    p.add_argument("--layers", type=int, default=None, help="cut the shape's depth to this many blocks")
    p.add_argument("--device", default="cpu", help="our device; llm-compressor uses its own (cuda when available)")
    p.add_argument("--dtype", default=None, help="float32 (default on cpu) or bfloat16 (default on cuda)")
    p.add_argument("--samples", type=int, default=32, help="Cb")
    p.add_argument("--seqlen", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None, help="sequences per forward pass, both sides (default Cb)")
    p.add_argument("--bits", default="2,3,4,8")
    p.add_argument("--groups", default=None, help="group sizes, -1 = per-channel (default: see above)")
    p.add_argument("--sym", action="store_true", help="symmetric grids (default asymmetric)")
    p.add_argument("--no-alone", action="store_true", help="skip ours one configuration at a time")
    p.add_argument("--no-library", action="store_true", help="skip llm-compressor")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 is steadier on a shared machine)")
    p.add_argument("--verbose", action="store_true", help="keep llm-compressor's logs and progress bars")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not a.verbose:
        os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")  # disabling it breaks its METRIC level
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    versions = f"torch {torch.__version__}"
    if not a.no_library:
        import llmcompressor  # imported here, outside every clock

        versions += f", llmcompressor {llmcompressor.__version__}"
    import transformers

    if not a.verbose:
        transformers.utils.logging.disable_progress_bar()

    original, name = build(a, dtype)
    ids = calibration_ids(a, original)
    bs = a.batch_size or a.samples
    groups = [int(g) for g in a.groups.split(",")] if a.groups else [*default_groups(original), -1]
    configs = [QuantConfig(int(b), g, a.sym) for b in a.bits.split(",") for g in groups]
    C = len(configs)
    n_params = sum(t.numel() for t in original.parameters())
    print(
        f"{versions}, transformers {transformers.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"{name}: {n_params:,} params, {dtype}, Cb = {a.samples} x {a.seqlen} tokens, batch {bs}, ours on {device}; "
        f"{C} configurations: bits {a.bits} x groups {','.join(map(str, groups))}{' sym' if a.sym else ''}"
    )

    model = copy.deepcopy(original).to(device)
    with torch.no_grad():  # warm-up, outside every clock: allocator, kernels, lazy imports
        model(ids[: min(bs, 2)].to(device), use_cache=False)
    ids_dev = ids.to(device)
    peak = Peak(device)
    peak.reset()
    t0 = clock(device)
    ours, stages = quantize_model(model, ids_dev, configs, batch_size=bs, **MATCHED)
    together = clock(device) - t0
    peak.take()
    print(f"\nours, one quantize_model call for {C} configurations: {together:.3f} s ({together / C:.4f} s/config)")
    print(f"  {peak}")
    print("  stages: " + ", ".join(f"{k} {v:.3f} s" for k, v in stages.items()))

    if not a.no_alone:
        peak_alone = Peak(device)
        peak_alone.reset()
        t0 = clock(device)
        for cfg in configs:
            quantize_model(model, ids_dev, [cfg], batch_size=bs, **MATCHED)
        alone = clock(device) - t0
        peak_alone.take()
        print(
            f"ours, one call per configuration (reference): {alone:.3f} s ({alone / C:.4f} s/config), {peak_alone}; "
            f"one at a time / together {alone / together:.2f}x"
        )
    del model
    if a.no_library:
        return

    print("\nllm-compressor, one oneshot call per configuration (fresh copy of the original model each):")
    peak_lib = Peak(device)
    times = []
    for c, cfg in enumerate(configs):
        lib_model = copy.deepcopy(original)  # outside the clock
        peak_lib.reset()
        times.append(library_call(lib_model, ids, cfg, bs, not a.verbose))
        peak_lib.take()
        share = equal_share(lib_model, ours[c].weights)
        print(f"  {label(cfg):<12} {times[-1]:8.3f} s   equal weights to ours {share:7.2%}")
        del lib_model
    lib = sum(times)
    print(
        f"llm-compressor total {lib:.3f} s ({lib / C:.4f} s/config, median call {statistics.median(times):.3f} s), "
        f"{peak_lib}"
    )
    print(
        f"\nratio llm-compressor s/config / ours s/config: {lib / C:.4f} / {together / C:.4f} = {lib / together:.1f}x"
        f" (on process CPU seconds: {peak_lib.cpu / peak.cpu:.1f}x)"
    )


if __name__ == "__main__":
    main()
