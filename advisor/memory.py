"""Weight memory of a quantized model: the one memory model of the project.

Counted as a GPTQ checkpoint stores it (the GPTQModel/AutoGPTQ "gptq" format): for every linear layer of every
decoder block, packed B-bit weights (qweight, int32), per-group zero points packed at B bits (qzeros, int32),
per-group fp16 scales, and the int32 group index of each input channel (g_idx); everything else (token
embeddings, an untied lm_head, norms, biases, MoE routers, a vision tower) stays at 16 bits. Per-channel (G = -1)
is one group per output column. A mixture-of-experts model stores every expert.

``memory_bill`` adds what serving needs on top of the weights: the KV cache (``kv_cache_bytes``) and a runtime
allowance (``RUNTIME_ALLOWANCE_BYTES``) for activations, the CUDA context and library workspaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.catalog import Architecture
from strata.errors import UserError

GB = 1e9  # decimal gigabytes, as Hugging Face reports file sizes


@dataclass(frozen=True)
class MemoryBreakdown:
    qweight: int
    qzeros: int
    scales: int
    g_idx: int
    fp16: int  # embeddings, lm_head, norms, biases, routers, vision tower

    @property
    def total(self) -> int:
        return self.qweight + self.qzeros + self.scales + self.g_idx + self.fp16

    @property
    def gb(self) -> float:
        return self.total / GB


def _int32_words(values: int, bits: float) -> int:
    return math.ceil(values * bits / 32)


def quantized_bytes(arch: Architecture, bits: float, group_size: int) -> MemoryBreakdown:
    """Bytes of the model's weights quantized to ``bits`` with group size ``group_size`` (-1 = per-channel)."""
    qweight = qzeros = scales = g_idx = 0
    for fan_in, fan_out, count in arch.linear_groups():  # every expert of a MoE model is stored
        groups = 1 if group_size == -1 else math.ceil(fan_in / group_size)
        qweight += count * 4 * _int32_words(fan_in, bits) * fan_out
        qzeros += count * 4 * groups * _int32_words(fan_out, bits)
        scales += count * 2 * groups * fan_out
        g_idx += count * 4 * fan_in
    fp16 = 2 * arch.unquantized_params()
    return MemoryBreakdown(qweight, qzeros, scales, g_idx, fp16)


def unquantized_bytes(arch: Architecture) -> int:
    """Bytes of the model in BF16/FP16."""
    return 2 * arch.total_params()


# --- the whole memory bill: weights + KV cache + runtime ---------------------------------------------------------

KV_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1}
GIB = 2**30

# Runtime allowance: the memory vLLM's start-up profile measures besides weights and KV cache. Figure: vLLM pull
# request #10511 ("[core] overhaul memory profiling", merged 2024-12, comment of 2024-12-14 by youkaichao), the
# profile of `vllm serve meta-llama/Meta-Llama-3-8B` on an 80 GB H100 at default settings (tp=1):
# "non_torch_memory 1.79GiB" (CUDA context, NCCL/cuBLAS workspaces) + "PyTorch activation peak memory 1.26GiB"
# (the forward pass at vLLM's default max_num_batched_tokens) = 3.05 GiB. A flat allowance: it is measured for one
# 8B model; activations grow with hidden size and batched tokens, and CUDA graphs (not in that profile) add more.
RUNTIME_ALLOWANCE_BYTES = round((1.79 + 1.26) * GIB)
RUNTIME_ALLOWANCE_SOURCE = (
    "vLLM PR #10511 memory profile, Meta-Llama-3-8B on H100, tp=1: non_torch_memory 1.79 GiB + "
    "PyTorch activation peak 1.26 GiB"
)


class MemoryBillError(UserError):
    """A context, batch or KV dtype the memory bill cannot use; one line with the fix."""


def kv_cache_bytes(arch: Architecture, context: int, batch: int = 1, kv_dtype: str = "bf16") -> int:
    """Bytes of the KV cache for ``batch`` sequences of ``context`` tokens each.

    Per layer and token: full-attention layers keep every token, sliding-window layers at most ``sliding_window``
    of them; GQA/MQA layers store K and V of ``num_kv_heads`` heads of ``head_dim``; MLA layers (DeepSeek-V3)
    store one compressed latent of ``kv_lora_rank`` plus the shared rotary key of ``qk_rope_head_dim``.
    """
    if isinstance(context, bool) or not isinstance(context, int) or context <= 0:
        raise MemoryBillError(f"--context must be a positive integer number of tokens, got {context!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise MemoryBillError(f"--batch must be a positive integer number of sequences, got {batch!r}")
    if kv_dtype not in KV_DTYPE_BYTES:
        raise MemoryBillError(f"--kv-dtype must be one of {', '.join(KV_DTYPE_BYTES)}, got {kv_dtype!r}")
    per_token = arch.kv_lora_rank + arch.qk_rope_head_dim if arch.is_mla else 2 * arch.num_kv_heads * arch.head_dim
    tokens = 0
    for kind in arch.attention_kinds():
        window = arch.sliding_window if kind == "sliding" and arch.sliding_window else context
        tokens += min(context, window)
    return tokens * per_token * KV_DTYPE_BYTES[kv_dtype] * batch


@dataclass(frozen=True)
class MemoryBill:
    """Serving memory, bytes: quantized weights + KV cache + runtime allowance."""

    weights: int
    kv_cache: int
    runtime: int
    context: int
    batch: int
    kv_dtype: str
    runtime_source: str = RUNTIME_ALLOWANCE_SOURCE

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.runtime

    def gb(self) -> dict[str, float]:
        """Each part in decimal GB."""
        parts = {"weights": self.weights, "kv_cache": self.kv_cache, "runtime": self.runtime, "total": self.total}
        return {k: v / GB for k, v in parts.items()}


def memory_bill(
    arch: Architecture,
    bits: float,
    group_size: int,
    context: int,
    batch: int = 1,
    kv_dtype: str = "bf16",
    runtime_bytes: int = RUNTIME_ALLOWANCE_BYTES,
) -> MemoryBill:
    """The whole memory bill of serving ``arch`` at B bits / group G (bits >= 16: unquantized BF16)."""
    weights = unquantized_bytes(arch) if bits >= 16 else quantized_bytes(arch, bits, group_size).total
    kv = kv_cache_bytes(arch, context, batch, kv_dtype)
    return MemoryBill(weights, kv, runtime_bytes, context, batch, kv_dtype)
