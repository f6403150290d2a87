"""Round-to-nearest fake quantization: the grid, the in-place swap and the restore."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from calibrate.rtn import apply_rtn, linear_layers, quantize_rtn, restore


def test_rtn_uses_at_most_2_to_the_bits_levels_per_group() -> None:
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    for bits, g in [(2, 16), (3, 32), (4, -1)]:
        q = quantize_rtn(w, bits, g)
        assert q.shape == w.shape and q.dtype == w.dtype
        groups = q.reshape(8, -1, 64 if g == -1 else g)
        for row in groups.reshape(-1, groups.shape[-1]):
            assert row.unique().numel() <= 2**bits


def test_rtn_error_shrinks_with_bits_and_smaller_groups() -> None:
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(1))
    err = {(b, g): (quantize_rtn(w, b, g) - w).pow(2).mean().item() for b in (2, 3, 4, 8) for g in (32, -1)}
    assert err[(2, -1)] > err[(3, -1)] > err[(4, -1)] > err[(8, -1)]
    assert err[(2, 32)] < err[(2, -1)]
    assert err[(8, -1)] < 1e-4


def test_rtn_rejects_a_group_that_does_not_divide_the_width() -> None:
    with pytest.raises(ValueError, match="group size"):
        quantize_rtn(torch.randn(4, 10), 4, 3)


def test_apply_and_restore_in_place_skipping_the_head() -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", nn.Linear(32, 32))
    model.add_module("lm_head", nn.Linear(32, 8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    body = model.body.weight
    originals = apply_rtn(model, bits=2, group_size=16)
    assert set(originals) == {"body"} == set(linear_layers(model))
    assert model.body.weight is body  # same tensor object: holders of the model see the new values
    assert not torch.equal(model.body.weight, before["body.weight"])
    assert torch.equal(model.lm_head.weight, before["lm_head.weight"])
    restore(model, originals)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
