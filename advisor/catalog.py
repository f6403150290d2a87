"""Known models: parameter counts, family and the architecture the memory model needs.

Architectures are the published config.json values of each model. A model outside the catalog is described
by ``--config`` (a local Hugging Face config.json: exact, no weights needed) or ``--params``/``--family``
(then the architecture is scaled from the family's nearest catalog model and marked approximate).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strata.errors import UserError, field_error


class CatalogError(UserError):
    """Unknown model or unusable config; one line with the fix."""


@dataclass(frozen=True)
class Architecture:
    """What the memory model needs of a decoder-only transformer, as its config.json gives it.

    Dense models use the first nine fields. A mixture-of-experts (MoE) model sets ``num_experts`` (routed experts
    per MoE layer), ``experts_per_token`` and ``moe_intermediate_size`` (one expert's MLP width), plus
    ``shared_expert_intermediate_size`` (the always-on shared experts, summed) and ``dense_layers`` (leading layers
    with a dense MLP of ``intermediate_size``, DeepSeek's ``first_k_dense_replace``). Every expert is counted in
    memory. Multi-head latent attention (MLA, DeepSeek-V3) sets ``kv_lora_rank`` and the ``q*_head_dim`` fields.
    ``layer_types`` lists "full" or "sliding" per layer (empty: all full); sliding layers see ``sliding_window``
    tokens. ``vision_params`` is a vision tower kept at 16 bits (Gemma 3's SigLIP encoder and projector).
    Fused projections (Phi-3's qkv_proj, gate_up_proj) count the same as separate ones.
    """

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_embeddings: bool
    qk_norm: bool = False  # Qwen3, Gemma 3 and OLMo 2 normalize q and k
    norms_per_layer: int = 2  # Gemma 2/3 also normalize after attention and MLP: 4
    qkv_bias: bool = False  # Qwen2, gpt-oss
    o_bias: bool = False  # gpt-oss (attention_bias: true)
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    dense_layers: int = 0
    expert_bias: bool = False  # gpt-oss experts and router carry biases
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    vision_params: int = 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def attention_kinds(self) -> tuple[str, ...]:
        """ "full" or "sliding" for each layer."""
        return self.layer_types or ("full",) * self.num_layers

    def attention_shapes(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of one layer's attention projections."""
        h = self.hidden_size
        if self.is_mla:
            nope, rope, heads = self.qk_nope_head_dim, self.qk_rope_head_dim, self.num_heads
            shapes = [(h, self.q_lora_rank), (self.q_lora_rank, heads * (nope + rope))] if self.q_lora_rank else []
            if not self.q_lora_rank:
                shapes = [(h, heads * (nope + rope))]
            shapes.append((h, self.kv_lora_rank + rope))
            shapes.append((self.kv_lora_rank, heads * (nope + self.v_head_dim)))
            shapes.append((heads * self.v_head_dim, h))
            return shapes
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return [(h, q), (h, kv), (h, kv), (q, h)]

    def mlp_shapes(self, width: int) -> list[tuple[int, int]]:
        """gate, up and down projections of a gated MLP (or one expert) of ``width``."""
        h = self.hidden_size
        return [(h, width), (h, width), (width, h)]

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of the quantized linear layers of one decoder block (a MoE block for MoE)."""
        return [(a, b) for a, b, n in self._block_groups(moe=self.is_moe) for _ in range(n)]

    def _block_groups(self, moe: bool) -> list[tuple[int, int, int]]:
        groups = [(a, b, 1) for a, b in self.attention_shapes()]
        if not moe:
            return groups + [(a, b, 1) for a, b in self.mlp_shapes(self.intermediate_size)]
        groups += [(a, b, self.num_experts) for a, b in self.mlp_shapes(self.moe_intermediate_size)]
        if self.shared_expert_intermediate_size:
            groups += [(a, b, 1) for a, b in self.mlp_shapes(self.shared_expert_intermediate_size)]
        return groups

    def moe_layers(self) -> int:
        return self.num_layers - self.dense_layers if self.is_moe else 0

    def linear_groups(self) -> list[tuple[int, int, int]]:
        """(in_features, out_features, count) of every quantized linear layer of the model: all experts included."""
        dense = self.num_layers - self.moe_layers()
        out = [(a, b, n * dense) for a, b, n in self._block_groups(moe=False)] if dense else []
        if self.moe_layers():
            out += [(a, b, n * self.moe_layers()) for a, b, n in self._block_groups(moe=True)]
        return out

    def linear_params(self) -> int:
        return sum(a * b * n for a, b, n in self.linear_groups())

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    def norm_params(self) -> int:
        per_layer = self.norms_per_layer * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)
        if self.is_mla:
            per_layer += self.q_lora_rank + self.kv_lora_rank
        return self.num_layers * per_layer + self.hidden_size

    def bias_params(self) -> int:
        """Attention, expert and router biases (kept at 16 bits)."""
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        per_layer = (q + 2 * kv if self.qkv_bias else 0) + (self.hidden_size if self.o_bias else 0)
        total = self.num_layers * per_layer
        if self.expert_bias:
            per_expert = 2 * self.moe_intermediate_size + self.hidden_size
            total += self.moe_layers() * self.num_experts * (per_expert + 1)  # + the router's bias
        return total

    def router_params(self) -> int:
        return self.moe_layers() * self.hidden_size * self.num_experts

    def unquantized_params(self) -> int:
        """Parameters that stay at 16 bits in a GPTQ checkpoint: embeddings, lm_head, norms, biases, routers, vision."""
        return (
            self.embedding_params() + self.norm_params() + self.bias_params() + self.router_params()
            + self.vision_params
        )  # fmt: skip

    def total_params(self) -> int:
        return self.linear_params() + self.unquantized_params()

    def active_params(self, input_embedding: bool = True) -> int:
        """Parameters one token passes through: ``experts_per_token`` of the routed experts (all of a dense model).

        ``input_embedding=False`` leaves out the token-embedding lookup (OpenAI's convention for gpt-oss)."""
        total = self.total_params()
        if self.is_moe:
            per_expert = sum(a * b for a, b in self.mlp_shapes(self.moe_intermediate_size))
            if self.expert_bias:
                per_expert += 2 * self.moe_intermediate_size + self.hidden_size
            total -= self.moe_layers() * (self.num_experts - self.experts_per_token) * per_expert
        if not input_embedding and not self.tie_embeddings:
            total -= self.vocab_size * self.hidden_size
        return total


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    params_b: float  # total parameters, billions, as published by the model maker
    arch: Architecture
    hf_id: str = ""
    aliases: tuple[str, ...] = ()
    approximate: bool = False  # architecture scaled from a catalog model, not read from a config
    active_params_b: float | None = None  # MoE: parameters per token, billions, as published
    params_source: str = ""  # where params_b (and active_params_b) were published
    config_source: str = ""  # the config.json the architecture was read from
    config_verified: bool = False  # the architecture was checked against a real config.json (config_source says where)
    config_checked: str = ""  # not verified: the transcriptions (package, version, path) it was cross-checked against

    @property
    def params(self) -> float:
        return self.params_b * 1e9

    @property
    def computed_active_params_b(self) -> float:
        """Active parameters computed from the architecture (all parameters for a dense model), billions."""
        return self.arch.active_params() / 1e9


# Fields a config.json may leave out take the defaults of transformers' config class for its model_type
# (transformers 4.5x: Gemma2Config/Gemma3TextConfig tie embeddings, Gemma3TextConfig's 4B-sized defaults).
_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": {"tie_word_embeddings": True},
    "gemma2": {"tie_word_embeddings": True, "head_dim": 256, "sliding_window": 4096},
    "gemma3_text": {
        "tie_word_embeddings": True, "vocab_size": 262208, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "sliding_window": 4096, "sliding_window_pattern": 6,
    },
}  # fmt: skip
_FAMILY = {
    "qwen3": "Qwen3", "qwen3_moe": "Qwen3", "qwen2": "Qwen2.5", "mistral": "Mistral", "mixtral": "Mixtral",
    "gemma2": "Gemma-2", "gemma3": "Gemma-3", "gemma3_text": "Gemma-3", "phi3": "Phi-3", "olmo2": "OLMo-2",
    "gpt_oss": "gpt-oss", "deepseek_v3": "DeepSeek-V3",
}  # fmt: skip
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"}


def _vision_params(vc: dict[str, Any], text_hidden: int) -> int:
    """A SigLIP vision tower (ViT: patch embedding, learned positions, pre-norm blocks, post norm) and the
    Gemma 3 projector (one matrix and a norm)."""
    if vc.get("model_type") != "siglip_vision_model":
        return 0
    d, ff, n = int(vc["hidden_size"]), int(vc["intermediate_size"]), int(vc["num_hidden_layers"])
    patch, image = int(vc.get("patch_size", 16)), int(vc.get("image_size", 224))
    block = 4 * (d * d + d) + 2 * d * ff + ff + d + 4 * d
    embed = 3 * patch * patch * d + d + (image // patch) ** 2 * d
    return n * block + embed + 2 * d + d * text_hidden + d


def _layer_types(cfg: dict[str, Any], model_type: str, layers: int) -> tuple[tuple[str, ...], int | None]:
    window = cfg.get("sliding_window")
    if "layer_types" in cfg:
        kinds = tuple("sliding" if t == "sliding_attention" else "full" for t in cfg["layer_types"])
        return (kinds, int(window)) if "sliding" in kinds and window else ((), None)
    if not window or cfg.get("use_sliding_window") is False:
        return (), None
    if model_type == "gemma2":  # transformers Gemma2: even layers slide
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(layers)), int(window)
    if model_type in ("gemma3", "gemma3_text"):  # every sliding_window_pattern-th layer is global
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        return tuple("sliding" if (i + 1) % pattern else "full" for i in range(layers)), int(window)
    return ("sliding",) * layers, int(window)  # Mistral v0.1, Phi-3: every layer slides


def architecture_from_config(config: dict[str, Any]) -> Architecture:
    """The Architecture of a Hugging Face config.json (a dict): dense, MoE, sliding-window, MLA, ``text_config``."""
    outer = config
    cfg = dict(config.get("text_config") or config)
    model_type = str(cfg.get("model_type") or outer.get("model_type") or "")
    cfg = {
        **_TYPE_DEFAULTS.get(model_type, {}),
        **{k: v for k, v in cfg.items() if v is not None or k == "sliding_window"},
    }
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 0)
    kinds, window = _layer_types(cfg, model_type, layers)
    moe: dict[str, Any] = {}
    if experts:
        moe_width = int(cfg.get("moe_intermediate_size") or cfg["intermediate_size"])
        n_shared = int(cfg.get("n_shared_experts") or 0)
        shared = int(cfg.get("shared_expert_intermediate_size") or 0) or moe_width * n_shared
        dense = int(cfg.get("first_k_dense_replace") or 0) + len(cfg.get("mlp_only_layers") or [])
        if int(cfg.get("decoder_sparse_step") or 1) != 1:
            raise ValueError("decoder_sparse_step other than 1 (MoE only every k-th layer) is not modelled")
        moe = {
            "num_experts": experts, "moe_intermediate_size": moe_width, "shared_expert_intermediate_size": shared,
            "experts_per_token": int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 0),
            "dense_layers": dense, "expert_bias": model_type == "gpt_oss",
        }  # fmt: skip
    mla: dict[str, Any] = {}
    if cfg.get("kv_lora_rank"):
        mla = {k: int(cfg.get(k) or 0) for k in ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                                   "v_head_dim")}  # fmt: skip
    attention_bias = bool(cfg.get("attention_bias", False))
    vision = outer.get("vision_config")
    return Architecture(
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        vocab_size=int(cfg["vocab_size"]),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qk_norm=model_type in _QK_NORM,
        norms_per_layer=4 if model_type.startswith(("gemma2", "gemma3")) else 2,
        qkv_bias=model_type == "qwen2" or attention_bias,
        o_bias=attention_bias,
        sliding_window=window,
        layer_types=kinds,
        vision_params=_vision_params(vision, hidden) if isinstance(vision, dict) else 0,
        **moe,
        **mla,
    )


def family_of(config: dict[str, Any], arch: Architecture) -> str:
    model_type = str((config.get("text_config") or {}).get("model_type") or config.get("model_type") or "")
    if model_type == "llama":
        return "Llama-3" if arch.vocab_size >= 128000 else "Llama-2"  # the vocabulary tells the generations apart
    return _FAMILY.get(model_type, model_type or "unknown")


class _Entry(BaseModel):
    """One model of advisor/data/catalog.json."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built only when a user's catalog is validated
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    hf_id: str
    aliases: list[str] = []
    params_b: float = Field(gt=0)
    params_source: str = Field(min_length=1)
    active_params_b: float | None = Field(default=None, gt=0)
    active_params_source: str | None = None
    active_counts_input_embedding: bool = True
    config_source: str = Field(min_length=1)
    # True: every architecture field was compared with a verbatim copy of the model's config.json (config_source);
    # False: written from the published architecture, not yet checked against the file (config_source says so)
    config_verified: bool = False
    # not verified: the maintained transcriptions of the architecture (package==version path, entry) that every stated
    # field was compared with, and on which fields they agree; "" = not cross-checked
    config_checked: str = ""
    config: dict[str, Any]


_CATALOG_FILE = Path(__file__).with_name("data") / "catalog.json"


def load_catalog(path: str | Path = _CATALOG_FILE, *, validate: bool = True) -> tuple[ModelInfo, ...]:
    """The catalog file, validated: one CatalogError line naming the first bad entry and what is wrong.

    ``validate=False`` only for the file strata ships, which tests/test_catalog.py validates: its pydantic check
    is a tenth of the advisor's cold start and can find nothing the test has not."""
    raw = json.loads(Path(path).read_text())
    out = []
    for i, item in enumerate(raw.get("models", [])):
        label = f"{Path(path).name} entry {i} ({item.get('name', '?') if isinstance(item, dict) else '?'})"
        try:
            e = _Entry.model_validate(item) if validate else _Entry.model_construct(**item)
            arch = architecture_from_config(e.config)
        except ValidationError as exc:
            where, msg = field_error(exc)
            raise CatalogError(f"{label}: {where}: {msg}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{label}: config lacks a usable field {exc}") from None
        out.append(ModelInfo(e.name, e.family, e.params_b, arch, e.hf_id, tuple(a.lower() for a in e.aliases),
                             active_params_b=e.active_params_b, params_source=e.params_source,
                             config_source=e.config_source, config_verified=e.config_verified,
                             config_checked=e.config_checked))  # fmt: skip
        if not e.active_counts_input_embedding:
            _NO_INPUT_EMBEDDING.add(e.name)
    return tuple(out)


_NO_INPUT_EMBEDDING: set[str] = set()  # entries whose maker counts active parameters without the input embedding
CATALOG: tuple[ModelInfo, ...] = load_catalog(validate=False)

_SUFFIX = re.compile(r"-(instruct|chat|it|base|hf)(?=-|$)")


def _norm(key: str) -> str:
    """A model id without its post-training suffixes: "Qwen2.5-7B-Instruct" and "Qwen2.5-7B" share one key."""
    return _SUFFIX.sub("", key)


def _keys(m: ModelInfo) -> list[str]:
    keys = [m.name, m.hf_id.lower(), m.hf_id.lower().split("/")[-1], *m.aliases]
    keys += [a.split("/")[-1] for a in m.aliases if "/" in a]
    return [k for k in keys if k]


_INDEX = {k: m for m in CATALOG for k in _keys(m)}
_NORM_INDEX: dict[str, ModelInfo] = {}
for _m in CATALOG:
    for _k in _keys(_m):
        _NORM_INDEX.setdefault(_norm(_k), _m)


def active_input_embedding(m: ModelInfo) -> bool:
    """Whether the maker's active-parameter figure for ``m`` counts the token-embedding lookup."""
    return m.name not in _NO_INPUT_EMBEDDING


def find(name: str) -> ModelInfo | None:
    """A catalog model by name, Hugging Face id or published name, or None; "-Instruct", "-Chat", "-it", "-Base"
    checkpoints share their sibling's architecture."""
    key = name.strip().lower()
    return _INDEX.get(key) or _NORM_INDEX.get(_norm(key)) or _NORM_INDEX.get(_norm(key.split("/")[-1]))


def lookup(name: str) -> ModelInfo:
    """A catalog model by name, Hugging Face id or published name (case-insensitive), or CatalogError."""
    found = find(name)
    if found is not None:
        return found
    key = name.strip().lower()
    close = difflib.get_close_matches(key, sorted({m.name for m in CATALOG}), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise CatalogError(
        f"unknown model {name!r}; {hint}known: {', '.join(m.name for m in CATALOG)}; "
        "or describe it with --config config.json, or --params and --family"
    )


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
    ratio = (params_b * 1e9 - near.arch.unquantized_params()) / max(near.arch.linear_params(), 1)
    layers = max(1, round(near.arch.num_layers * ratio))
    kinds = near.arch.layer_types
    arch = replace(
        near.arch,
        num_layers=layers,
        layer_types=tuple(kinds[i % len(kinds)] for i in range(layers)) if kinds else (),
        dense_layers=min(near.arch.dense_layers, layers),
    )
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
    if not isinstance(cfg, dict):
        raise CatalogError(f"config {path} is not a JSON object; pass a Hugging Face config.json")
    try:
        arch = architecture_from_config(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"config {path} lacks a usable field {exc}; it must be a decoder-only HF config") from None
    name = str(cfg.get("_name_or_path") or path.parent.name)
    active = arch.active_params() / 1e9 if arch.is_moe else None
    return ModelInfo(name, family_of(cfg, arch), arch.total_params() / 1e9, arch, active_params_b=active,
                     config_source=str(path), config_verified=True)  # fmt: skip
