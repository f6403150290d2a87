"""A random-weight Qwen3 of a published shape saved as a local checkpoint with the synthetic world's tokenizer,
tier map and tasks, so the sweep, the naive path and the evaluator can run on it offline (bench/gpu.sh).

    python bench/random_checkpoint.py --shape qwen3-1.7b --out /tmp/q17 [--layers 4]

The shapes are bench/gptq_speed.py's (the published config.json dimensions; ``tiny`` for a CPU). Accuracies of a
random model are chance: the checkpoint is for timing, not for quality.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gptq_speed import MODELS, SHAPES  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=None, help="cut the shape's depth to this many blocks")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--vocab", type=int, default=151936, help="vocabulary rows (the world's tokenizer uses 249)")
    a = ap.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    dims = SHAPES[a.shape] | ({"num_hidden_layers": a.layers} if a.layers else {})
    cfg = Qwen3Config(
        vocab_size=a.vocab,
        max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        **dims,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, a.dtype))
    model.save_pretrained(a.out)
    xs = MODELS["xs"]
    for name in ("tokenizer.json", "tokenizer_config.json", "tier_map.yaml"):
        shutil.copy(xs / name, a.out / name)
    shutil.copytree(xs / "tasks", a.out / "tasks", dirs_exist_ok=True)
    print(f"{a.out}: {a.shape}-shaped Qwen3, {dims['num_hidden_layers']} layers, random weights, {a.dtype}")


if __name__ == "__main__":
    main()
