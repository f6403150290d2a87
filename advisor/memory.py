"""Weight memory of a quantized model: the one memory model of the project.

Counted as a GPTQ checkpoint stores it (the GPTQModel/AutoGPTQ "gptq" format): for every linear layer of every
decoder block, packed B-bit weights (qweight, int32), per-group zero points packed at B bits (qzeros, int32),
per-group fp16 scales, and the int32 group index of each input channel (g_idx); everything else (token
embeddings, an untied lm_head, norms) stays at 16 bits. Per-channel (G = -1) is one group per output column.
This is weight memory only: the KV cache and activations come on top at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.catalog import Architecture

GB = 1e9  # decimal gigabytes, as Hugging Face reports file sizes


@dataclass(frozen=True)
class MemoryBreakdown:
    qweight: int
    qzeros: int
    scales: int
    g_idx: int
    fp16: int  # embeddings, lm_head, norms

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
    for fan_in, fan_out in arch.linear_shapes():
        groups = 1 if group_size == -1 else math.ceil(fan_in / group_size)
        qweight += 4 * _int32_words(fan_in, bits) * fan_out
        qzeros += 4 * groups * _int32_words(fan_out, bits)
        scales += 2 * groups * fan_out
        g_idx += 4 * fan_in
    n = arch.num_layers
    fp16 = 2 * (arch.embedding_params() + arch.norm_params())
    return MemoryBreakdown(n * qweight, n * qzeros, n * scales, n * g_idx, fp16)


def unquantized_bytes(arch: Architecture) -> int:
    """Bytes of the model in BF16/FP16."""
    return 2 * arch.total_params()
