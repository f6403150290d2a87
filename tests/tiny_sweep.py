"""The small sweep the sweep and executor tests share: the shipped xs model, 2 configurations, 8 items per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
XS = ROOT / "examples" / "models" / "strata-world-xs"
CALIB = ROOT / "examples" / "calib" / "strata-world.txt"


def tiny_spec(store_path: Path, **over: Any) -> dict[str, Any]:
    """A spec mapping (reference + W2/W4 g32 at Cb 4, ~15 s on a CPU); ``over`` replaces top-level fields."""
    data: dict[str, Any] = {
        "name": "t",
        "models": [{"model": str(XS), "family": "strata-world"}],
        "method": "gptq",
        "bits": [2, 4],
        "group_sizes": [32],
        "calib_samples": [4],
        "calibration": {"files": [str(CALIB)], "seqlen": 16, "seeds": [0]},
        "gptq": {"batch_size": 4},
        "evaluation": {"limit": 8, "seed": 0},
        "store": str(store_path),
    }
    data.update(over)
    return data


def random_model(out: Path, config_class: Any, **over: Any) -> Path:
    """A tiny random model of a real architecture (a transformers config class) with the world's tokenizer and
    tasks, saved as a local checkpoint: 2 layers, hidden 64."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = dict(
        vocab_size=249, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=None,
        tie_word_embeddings=True,
    )  # fmt: skip
    kw.update(over)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config_class(**kw)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "tier_map.yaml"):
        shutil.copy(XS / name, out / name)
    shutil.copytree(XS / "tasks", out / "tasks")
    return out
