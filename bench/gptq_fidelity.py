"""GPTQ fidelity: strata's whole-model GPTQ against llm-compressor's GPTQModifier, same model, inputs and configs.

Needs llmcompressor (0.14.0.1 measured) in the running environment — keep it out of the project's own venv:

    python -m venv /tmp/fid && /tmp/fid/bin/pip install torch==2.13.0 llmcompressor==0.14.0.1 \\
        && /tmp/fid/bin/pip install -e . --no-deps && HF_HUB_OFFLINE=1 /tmp/fid/bin/python bench/gptq_fidelity.py

Both sides quantize every block linear of the shipped strata-world-xs (lm_head left alone) from the same calibration
batch (the world's own text). llm-compressor's conventions, matched through strata's configuration:
- its sequential pipeline takes every Hessian of a block from one pass and feeds the next block the quantized
  block's outputs: ``true_sequential=False, propagate="quantized"``;
- its observer fixes each group's grid from the unquantized weights before GPTQ runs: ``static_groups=True`` (the
  GPTQ reference and GPTQModel's default find a group's grid when the column loop reaches it, over the updated
  weights; printed as "lazy" beside it);
- its act-order defaults to "static" (columns by descending diag H, groups kept in the original order): compared
  with ``actorder=None`` and, for one config, "static" = ``act_order=True, static_groups=True``;
- damping 0.01 × mean diag H, block 128, min-max grids widened to include 0; symmetric int4 is [-8, 7] × absmax/7.5
  and asymmetric zero points are rounded to integers — the same grids as the reference's.
It prints, per configuration and linear, the share of weights that are equal and the relative reconstruction error
‖X(Wq − W)‖ / ‖XW‖ on the full-precision calibration inputs X of that linear, for both, and the ratio ours / theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from calibrate import world
from calibrate.gptq import QuantConfig
from calibrate.sequential import quantize_model

ROOT = Path(__file__).resolve().parents[1]
XS = ROOT / "examples" / "models" / "strata-world-xs"
CONFIGS = [QuantConfig(4, 32), QuantConfig(4, 32, sym=True), QuantConfig(3, 32), QuantConfig(8, -1, sym=True)]


def calibration_ids(model_dir: Path, n: int, seqlen: int) -> torch.Tensor:
    """``n`` sequences of ``seqlen`` tokens of the world's training text (the text the model knows)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(" ".join(world.corpus(world.generate())))["input_ids"]
    return torch.tensor(ids[: n * seqlen]).reshape(n, seqlen)


def load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def library_weights(model_dir: Path, ids: torch.Tensor, cfg: QuantConfig, actorder: str | None) -> dict[str, Any]:
    """llm-compressor's dequantized block weights for one configuration (a fresh model; it is changed in place)."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier

    model = load(model_dir)
    scheme = {"num_bits": cfg.bits, "type": "int", "symmetric": cfg.sym}
    scheme |= {"strategy": "group", "group_size": cfg.group_size} if cfg.group_size > 0 else {"strategy": "channel"}
    recipe = GPTQModifier(
        ignore=["lm_head"],
        actorder=actorder,
        dampening_frac=0.01,
        block_size=128,
        config_groups={"g0": {"targets": ["Linear"], "weights": scheme}},
    )
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # whatever it writes stays in tmp
        oneshot(
            model=model,
            dataset=data,
            recipe=recipe,
            num_calibration_samples=len(ids),
            max_seq_length=ids.shape[1],
            batch_size=len(ids),
            shuffle_calibration_samples=False,
        )
    return {
        n: m.weight.detach().clone()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    }


def fp_inputs(model: Any, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each block linear's full-precision inputs (tokens, in_features) over the calibration batch."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _, a, n=n: seen.__setitem__(n, a[0].reshape(-1, a[0].shape[-1])))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    ]
    with torch.no_grad():
        model(ids, use_cache=False)
    for h in hooks:
        h.remove()
    return seen


def rel_error(x: torch.Tensor, w: torch.Tensor, q: torch.Tensor) -> float:
    return ((x @ (q - w).T).norm() / (x @ w.T).norm()).item()


def compare(model_dir: Path, ids: torch.Tensor, configs: list[QuantConfig], act_order: bool) -> list[dict[str, Any]]:
    """One row per (config, linear): equal share, our and the library's relative errors, and ours with lazy grids."""
    model = load(model_dir)
    xs = fp_inputs(model, ids)
    common: dict[str, Any] = {
        "true_sequential": False,
        "propagate": "quantized",
        "act_order": act_order,
        "batch_size": len(ids),
    }
    ours, _ = quantize_model(model, ids, configs, static_groups=True, **common)
    lazy, _ = quantize_model(model, ids, configs, static_groups=False, **common)
    modules = dict(model.named_modules())
    rows = []
    for c, cfg in enumerate(configs):
        lib = library_weights(model_dir, ids, cfg, "static" if act_order else None)
        for name, x in xs.items():
            w = modules[name].weight.detach()
            q, ql = ours[c].weights[name], lib[name]
            rows.append(
                {
                    "config": f"W{cfg.bits} g{cfg.group_size} {'sym' if cfg.sym else 'asym'}"
                    + (" act-order" if act_order else ""),
                    "linear": name.removeprefix("model."),
                    "equal": (q == ql).float().mean().item(),
                    "ours": rel_error(x, w, q),
                    "library": rel_error(x, w, ql),
                    "lazy": rel_error(x, w, lazy[c].weights[name]),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=XS)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seqlen", type=int, default=32)
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    ids = calibration_ids(a.model, a.samples, a.seqlen)
    rows = compare(a.model, ids, CONFIGS, act_order=False) + compare(a.model, ids, CONFIGS[:1], act_order=True)
    print(f"\n{a.model.name}, Cb = {a.samples} x {a.seqlen} tokens; relative error ||X(Wq - W)|| / ||XW||")
    print(f"{'config':<22} {'linear':<26} {'equal':>7} {'ours':>9} {'library':>9} {'ratio':>7} {'lazy':>9}")
    for r in rows:
        print(
            f"{r['config']:<22} {r['linear']:<26} {r['equal']:>7.2%} {r['ours']:>9.5f} {r['library']:>9.5f}"
            f" {r['ours'] / r['library']:>7.4f} {r['lazy']:>9.5f}"
        )
    ratios = [r["ours"] / r["library"] for r in rows]
    equal = sum(r["equal"] for r in rows) / len(rows)
    print(
        f"\nover {len(rows)} (config, linear) pairs: mean equal share {equal:.2%}, ours/library error ratio "
        f"min {min(ratios):.4f} max {max(ratios):.4f}; lazy/library mean "
        f"{sum(r['lazy'] / r['library'] for r in rows) / len(rows):.4f}"
    )


if __name__ == "__main__":
    main()
