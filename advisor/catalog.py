"""Known models: parameter counts, family and the architecture the memory model needs.

Architectures are the published config.json values of each model. A model outside the catalog is described
by ``--config`` (a local Hugging Face config.json: exact, no weights needed) or ``--params``/``--family``
(then the architecture is scaled from the family's nearest catalog model and marked approximate).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, replace
from pathlib import Path


class CatalogError(ValueError):
    """Unknown model or unusable config; one line with the fix."""


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_embeddings: bool
    qk_norm: bool = False  # Qwen3 normalizes q and k per head

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of the quantized linear layers of one decoder block."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.num_heads * self.head_dim, self.num_kv_heads
        return [(h, q), (h, kv * self.head_dim), (h, kv * self.head_dim), (q, h), (h, i), (h, i), (i, h)]

    def linear_params(self) -> int:
        return self.num_layers * sum(a * b for a, b in self.linear_shapes())

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    def norm_params(self) -> int:
        per_layer = 2 * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)
        return self.num_layers * per_layer + self.hidden_size

    def total_params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.norm_params()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    params_b: float  # total parameters, billions, as published by the model maker
    arch: Architecture
    hf_id: str = ""
    aliases: tuple[str, ...] = ()
    approximate: bool = False  # architecture scaled from a catalog model, not read from a config

    @property
    def params(self) -> float:
        return self.params_b * 1e9


def _qwen3(h: int, i: int, layers: int, heads: int, tied: bool) -> Architecture:
    return Architecture(h, i, layers, heads, 8, 128, 151936, tied, qk_norm=True)


def _llama(h: int, i: int, layers: int, heads: int, kv: int, vocab: int, tied: bool = False) -> Architecture:
    return Architecture(h, i, layers, heads, kv, h // heads, vocab, tied)


_L3 = 128256  # Llama-3 vocabulary
CATALOG: tuple[ModelInfo, ...] = (
    ModelInfo("qwen3-0.6b", "Qwen3", 0.6, _qwen3(1024, 3072, 28, 16, True), "Qwen/Qwen3-0.6B"),
    ModelInfo("qwen3-1.7b", "Qwen3", 1.7, _qwen3(2048, 6144, 28, 16, True), "Qwen/Qwen3-1.7B"),
    ModelInfo("qwen3-4b", "Qwen3", 4.0, _qwen3(2560, 9728, 36, 32, True), "Qwen/Qwen3-4B"),
    ModelInfo("qwen3-8b", "Qwen3", 8.2, _qwen3(4096, 12288, 36, 32, False), "Qwen/Qwen3-8B"),
    ModelInfo("qwen3-14b", "Qwen3", 14.8, _qwen3(5120, 17408, 40, 40, False), "Qwen/Qwen3-14B"),
    ModelInfo("qwen3-32b", "Qwen3", 32.8, _qwen3(5120, 25600, 64, 64, False), "Qwen/Qwen3-32B"),
    ModelInfo("llama-3-8b", "Llama-3", 8.0, _llama(4096, 14336, 32, 32, 8, _L3), "meta-llama/Meta-Llama-3-8B",
              ("meta-llama-3-8b", "meta-llama/meta-llama-3-8b-instruct")),
    ModelInfo("llama-3-70b", "Llama-3", 70.6, _llama(8192, 28672, 80, 64, 8, _L3), "meta-llama/Meta-Llama-3-70B",
              ("meta-llama-3-70b",)),
    ModelInfo("llama-3.1-8b", "Llama-3", 8.0, _llama(4096, 14336, 32, 32, 8, _L3), "meta-llama/Llama-3.1-8B",
              ("meta-llama/meta-llama-3.1-8b", "meta-llama/llama-3.1-8b-instruct")),
    ModelInfo("llama-3.1-70b", "Llama-3", 70.6, _llama(8192, 28672, 80, 64, 8, _L3), "meta-llama/Llama-3.1-70B",
              ("meta-llama/meta-llama-3.1-70b", "meta-llama/llama-3.1-70b-instruct")),
    ModelInfo("llama-3.2-1b", "Llama-3", 1.24, _llama(2048, 8192, 16, 32, 8, _L3, tied=True),
              "meta-llama/Llama-3.2-1B", ("meta-llama/llama-3.2-1b-instruct",)),
    ModelInfo("llama-3.2-3b", "Llama-3", 3.21, _llama(3072, 8192, 28, 24, 8, _L3, tied=True),
              "meta-llama/Llama-3.2-3B", ("meta-llama/llama-3.2-3b-instruct",)),
    ModelInfo("llama-2-7b", "Llama-2", 7.0, _llama(4096, 11008, 32, 32, 32, 32000), "meta-llama/Llama-2-7b-hf"),
    ModelInfo("llama-2-13b", "Llama-2", 13.0, _llama(5120, 13824, 40, 40, 40, 32000), "meta-llama/Llama-2-13b-hf"),
    ModelInfo("llama-2-70b", "Llama-2", 70.0, _llama(8192, 28672, 80, 64, 8, 32000), "meta-llama/Llama-2-70b-hf"),
    ModelInfo("llama-7b", "LLaMA-1", 6.7, _llama(4096, 11008, 32, 32, 32, 32000), "huggyllama/llama-7b"),
    ModelInfo("llama-13b", "LLaMA-1", 13.0, _llama(5120, 13824, 40, 40, 40, 32000), "huggyllama/llama-13b"),
    ModelInfo("llama-30b", "LLaMA-1", 32.5, _llama(6656, 17920, 60, 52, 52, 32000), "huggyllama/llama-30b"),
    ModelInfo("llama-65b", "LLaMA-1", 65.2, _llama(8192, 22016, 80, 64, 64, 32000), "huggyllama/llama-65b"),
    ModelInfo("mistral-7b", "Mistral", 7.3, _llama(4096, 14336, 32, 32, 8, 32000), "mistralai/Mistral-7B-v0.1",
              ("mistral-7b-v0.1",)),
)  # fmt: skip


def _keys(m: ModelInfo) -> list[str]:
    keys = [m.name, m.hf_id.lower(), m.hf_id.lower().split("/")[-1], *m.aliases]
    return [k for k in keys if k]


_INDEX = {k: m for m in CATALOG for k in _keys(m)}


def lookup(name: str) -> ModelInfo:
    """A catalog model by name, Hugging Face id or published name (case-insensitive), or CatalogError."""
    key = name.strip().lower()
    if key in _INDEX:
        return _INDEX[key]
    close = difflib.get_close_matches(key, sorted({m.name for m in CATALOG}), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise CatalogError(
        f"unknown model {name!r}; {hint}known: {', '.join(m.name for m in CATALOG)}; "
        "or describe it with --config config.json, or --params and --family"
    )


def find(name: str) -> ModelInfo | None:
    """Like ``lookup`` but None when unknown; a "-Base" checkpoint shares its post-trained sibling's architecture."""
    key = name.strip().lower()
    return _INDEX.get(key) or _INDEX.get(key.removesuffix("-base"))


def from_params(params_b: float, family: str, name: str = "") -> ModelInfo:
    """A model known only by size and family: the architecture of the family's nearest model, scaled."""
    members = [m for m in CATALOG if m.family.lower() == family.lower()]
    if not members:
        families = sorted({m.family for m in CATALOG})
        raise CatalogError(f"unknown family {family!r}; use one of {', '.join(families)}")
    if not params_b > 0:
        raise CatalogError(f"--params must be a positive number of billions, got {params_b}")
    near = min(members, key=lambda m: abs(m.params_b - params_b))
    # Scale the layer count so the parameter count matches: depth is what varies most within a family.
    ratio = (params_b * 1e9 - near.arch.embedding_params()) / max(near.arch.linear_params(), 1)
    layers = max(1, round(near.arch.num_layers * ratio))
    arch = replace(near.arch, num_layers=layers)
    return ModelInfo(name or f"{family}-{params_b:g}b", near.family, params_b, arch, approximate=True)


def from_config(path: str | Path) -> ModelInfo:
    """A model described by a local Hugging Face config.json; the parameter count is computed from it."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"config {path} does not exist; pass a Hugging Face config.json or its folder") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"config {path} is not valid JSON ({exc.msg}); pass a Hugging Face config.json") from None
    cfg = cfg.get("text_config", cfg)
    if any(k in cfg for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        raise CatalogError(f"config {path} describes a mixture-of-experts model, which strata does not model yet")
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        arch = Architecture(
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab_size=int(cfg["vocab_size"]),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qk_norm=str(cfg.get("model_type", "")).startswith("qwen3"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"config {path} lacks a usable field {exc}; it must be a decoder-only HF config") from None
    model_type = str(cfg.get("model_type", ""))
    llama = "Llama-3" if arch.vocab_size >= 128000 else "Llama-2"  # the vocabulary tells the generations apart
    family = {"qwen3": "Qwen3", "llama": llama, "mistral": "Mistral"}.get(model_type, model_type or "unknown")
    name = str(cfg.get("_name_or_path") or path.parent.name)
    return ModelInfo(name, family, arch.total_params() / 1e9, arch)
