"""Round-to-nearest (RTN) weight quantization: the no-calibration baseline every PTQ method is compared with.

Fake quantization: weights are quantized to ``bits`` integers per group and immediately dequantized, so the model
keeps running in floating point with exactly the values a real low-bit kernel would see. Asymmetric (a scale and
a zero point per group), the common choice for weight-only PTQ because weight rows are rarely centred on zero.
The grid itself is ``calibrate.gptq``'s (min-max over the group, widened to include zero, as in the GPTQ
reference); this module adds the model-level plumbing: swap RTN weights in, restore the originals.

Groups run along the input dimension of each ``nn.Linear`` weight (out_features x in_features): G consecutive
input weights of one output row share a scale and zero point; G = -1 is per-channel (one group per output row).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from calibrate import gptq
from strata.errors import UserError
from strata.law import PER_CHANNEL, group_size_problem


class RtnError(UserError):
    """RTN settings a weight cannot take (a ``ValueError``); one line naming the setting."""


def quantize_rtn(weight: torch.Tensor, bits: int, group_size: int = PER_CHANNEL) -> torch.Tensor:
    """The dequantized RTN version of a 2-D weight (a new tensor, same shape and dtype); ``weight`` is untouched."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight (out x in), got shape {tuple(weight.shape)}")
    if not 1 <= bits <= 16:
        raise RtnError(f"bits must be in [1, 16], got {bits}")
    if why := group_size_problem(group_size, weight.shape[1]):
        raise RtnError(f"group size {group_size} {why}")
    # One definition of the grid: the same min-max asymmetric grid GPTQ uses, so RTN and GPTQ differ only in
    # GPTQ's error feedback.
    return gptq.rtn(weight.detach(), [gptq.QuantConfig(bits=bits, group_size=group_size, sym=False)])[0]


def linear_layers(model: nn.Module, skip: Iterable[str] = ("lm_head",)) -> dict[str, nn.Linear]:
    """The model's ``nn.Linear`` modules by name, leaving out names ending in one of ``skip``.

    The output head is skipped by default, as in common weight-only PTQ practice (and in tied-embedding models it
    *is* the embedding table, which is not a linear layer of the blocks).
    """
    skip = tuple(skip)
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.endswith(skip)}


@torch.no_grad()
def apply_rtn(
    model: nn.Module, bits: int, group_size: int = PER_CHANNEL, skip: Iterable[str] = ("lm_head",)
) -> dict[str, torch.Tensor]:
    """Swap RTN weights into the model's quantizable weights in place (``calibrate.sequential.weights``: linears,
    GPT-2's Conv1D, fused MoE experts, each along its input dimension); return the originals for ``restore``."""
    from calibrate.sequential import weights  # nn.Linear, Conv1D (stored transposed), 3-D experts parameters

    originals: dict[str, torch.Tensor] = {}
    for name, w in weights(model, skip).items():
        originals[name] = w.tensor.detach().clone()
        w.tensor.copy_(w.stored(torch.stack([quantize_rtn(m, bits, group_size) for m in w.rows()])))
    return originals


@torch.no_grad()
def restore(model: nn.Module, originals: dict[str, torch.Tensor]) -> None:
    """Copy the original weights back (in place, so anything holding the model, e.g. an lm-eval HFLM, sees them)."""
    from calibrate.sequential import param_of  # a linear's (or Conv1D's) weight, or a 3-D experts parameter

    for name, weight in originals.items():
        param_of(model, name).copy_(weight)
