"""GPTQ (Frantar et al., 2023) for a batch of configurations of one layer, as one short function.

The algorithm follows IST-DASLab's reference ``fasterquant``: Hessian H = 2 X Xᵀ / n from the layer's
calibration inputs, dead columns zeroed, optional act-order (columns by descending diag H), damping
(``damp`` × mean diag H), the upper Cholesky factor of H⁻¹, then a lazy blockwise column loop: quantize a column,
spread its error over the block's remaining columns through the row of H⁻¹, and apply the block's accumulated
error to the columns after it in one matrix product. Group parameters (asymmetric min-max, or symmetric) are
found when a column starts a new group, over the weights as updated by earlier blocks (the reference and
GPTQModel read W, not the block's working copy); per-channel (G = -1) finds them once over the whole matrix.
``static_groups`` (the reference's option; always on in llm-compressor, whose observer fixes the grid before GPTQ
runs) instead fixes every group's grid from the unquantized weights, in the original column order, up front.

Batched: weights are stacked (C, rows, columns) and every column step, rank-1 update and block product runs once for all
C configurations, so they share each step's launch cost (the eager column loop is launch-bound, not FLOP-bound;
``bench/gptq_batched.py`` measures the gain). The configurations differ in bits, group size and symmetry, and either
share one Hessian (cols, cols) — the first layer of a model, or every layer when all configurations see full-precision
activations — or each has its own (C, cols, cols) — when each one's inputs come through its own already-quantized layers
below. The Cholesky factorisations are batched and each configuration reads its own row of H⁻¹; with act-order each
configuration gets its own column permutation (gathered), so groups follow its own permuted columns, as in the reference
without static groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QuantConfig:
    bits: int
    group_size: int  # -1 = per-channel
    sym: bool = False


def find_params(w: torch.Tensor, bits: torch.Tensor, sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scale and zero point of min-max quantization. w (C, rows, k); bits, sym (C,). Returns (C, rows)."""
    maxq = (2**bits - 1).to(w.dtype)[:, None]
    xmin = torch.minimum(w.amin(dim=2), torch.zeros((), dtype=w.dtype, device=w.device))
    xmax = torch.maximum(w.amax(dim=2), torch.zeros((), dtype=w.dtype, device=w.device))
    s = sym[:, None]
    absmax = torch.maximum(xmin.abs(), xmax)
    xmax = torch.where(s, absmax, xmax)
    xmin = torch.where(s & (xmin < 0), -absmax, xmin)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both_zero, -torch.ones_like(xmin), xmin)
    xmax = torch.where(both_zero, torch.ones_like(xmax), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.where(s, torch.full_like(scale, 1.0) * (maxq + 1) / 2, torch.round(-xmin / scale))
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Round to the grid and back (dequantized). w (C, rows, k); scale, zero (C, rows); bits (C,)."""
    maxq = (2**bits - 1).to(w.dtype)[:, None, None]
    q = torch.clamp(torch.round(w / scale[..., None]) + zero[..., None], torch.zeros_like(maxq), maxq)
    return scale[..., None] * (q - zero[..., None])


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """H = 2 X Xᵀ / n from calibration inputs (tokens, in_features), accumulated in float32."""
    x = inputs.reshape(-1, inputs.shape[-1]).float()
    return 2.0 * x.T @ x / x.shape[0]


def gptq(
    weight: torch.Tensor,
    H: torch.Tensor,
    configs: list[QuantConfig],
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    static_groups: bool = False,
) -> torch.Tensor:
    """Quantize ``weight`` (rows, columns) under every config; returns dequantized weights (C, rows, columns).

    ``H`` is (columns, columns), shared by all configs, or (C, columns, columns), one per config.
    """
    C, (rows, cols) = len(configs), weight.shape
    if H.shape not in ((cols, cols), (C, cols, cols)):
        raise ValueError(f"H must be ({cols}, {cols}) or ({C}, {cols}, {cols}), got {tuple(H.shape)}")
    dev = weight.device
    bits = torch.tensor([c.bits for c in configs], device=dev)
    sym = torch.tensor([c.sym for c in configs], device=dev)
    groups = [c.group_size if c.group_size > 0 else cols for c in configs]
    W = weight.float().unsqueeze(0).repeat(C, 1, 1)
    H = H.float().reshape(-1, cols, cols).clone()  # (Ch, cols, cols), Ch = 1 (shared) or C; broadcasts against W
    diag = torch.diagonal(H, dim1=1, dim2=2)  # a view: writing it writes H
    dead = diag == 0
    diag[dead] = 1.0
    W.masked_fill_(dead[:, None, :], 0.0)
    if static_groups:  # every column's grid, from the unquantized weights: (C, rows, cols) scales and zeros
        S, Z = torch.empty_like(W), torch.empty_like(W)
        for c, g in enumerate(groups):
            for j in range(0, cols, g):
                s, z = find_params(W[c : c + 1, :, j : j + g], bits[c : c + 1], sym[c : c + 1])
                S[c, :, j : j + g], Z[c, :, j : j + g] = s[0, :, None], z[0, :, None]
    perm = torch.argsort(diag, dim=1, descending=True) if act_order else None
    if perm is not None:  # one permutation per Hessian
        W = torch.gather(W, 2, perm[:, None, :].expand(C, rows, cols))
        if static_groups:  # the grids travel with their columns
            S, Z = (torch.gather(T, 2, perm[:, None, :].expand(C, rows, cols)) for T in (S, Z))
        H = torch.gather(torch.gather(H, 1, perm[:, :, None].expand_as(H)), 2, perm[:, None, :].expand_as(H))
    H += damp * torch.diagonal(H, dim1=1, dim2=2).mean(dim=1)[:, None, None] * torch.eye(cols, device=dev)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    Q = torch.zeros_like(W)
    scale = torch.zeros(C, rows, device=dev)
    zero = torch.zeros(C, rows, device=dev)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1, Err1, Hinv1 = W[:, :, i1:i2].clone(), torch.zeros(C, rows, i2 - i1, device=dev), Hinv[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if static_groups:
                scale, zero = S[:, :, col], Z[:, :, col]
            else:
                for c in (c for c in range(C) if col % groups[c] == 0):  # configs whose next group starts here
                    # As the reference: W, not W1, so in-block updates are not yet in the group's statistics.
                    s, z = find_params(W[c : c + 1, :, col : col + groups[c]], bits[c : c + 1], sym[c : c + 1])
                    scale[c], zero[c] = s[0], z[0]
            w = W1[:, :, i : i + 1]
            q = quantize(w, scale, zero, bits)
            Q[:, :, col : col + 1] = q
            err = (w - q) / Hinv1[:, i, i, None, None]
            W1[:, :, i:] -= err * Hinv1[:, None, i, i:]
            Err1[:, :, i : i + 1] = err
        W[:, :, i2:] -= Err1 @ Hinv[:, i1:i2, i2:]
    if perm is not None:
        Q = torch.gather(Q, 2, torch.argsort(perm, dim=1)[:, None, :].expand(C, rows, cols))
    return Q.to(weight.dtype)


def rtn(weight: torch.Tensor, configs: list[QuantConfig]) -> torch.Tensor:
    """Round-to-nearest baseline with the same grid and groups: GPTQ without error feedback."""
    C, cols = len(configs), weight.shape[1]
    W = weight.float().unsqueeze(0).repeat(C, 1, 1)
    bits = torch.tensor([c.bits for c in configs], device=weight.device)
    sym = torch.tensor([c.sym for c in configs], device=weight.device)
    out = torch.empty_like(W)
    for c, cfg in enumerate(configs):
        g = cfg.group_size if cfg.group_size > 0 else cols
        for j in range(0, cols, g):
            block = W[c : c + 1, :, j : j + g]
            s, z = find_params(block, bits[c : c + 1], sym[c : c + 1])
            out[c : c + 1, :, j : j + g] = quantize(block, s, z, bits[c : c + 1])
    return out.to(weight.dtype)
