"""GPTQ, batched over configurations: the reference algorithm's properties, as specifications."""

import pytest

torch = pytest.importorskip("torch")

from calibrate.gptq import QuantConfig, find_params, gptq, hessian, quantize, rtn  # noqa: E402

CONFIGS = [QuantConfig(4, 32), QuantConfig(3, 64), QuantConfig(2, -1), QuantConfig(4, 32, sym=True)]


def correlated_inputs(n=2048, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(d, d, generator=g) / d**0.5
    scales = torch.logspace(0, -2, d)
    return torch.randn(n, d, generator=g) @ (basis * scales[:, None]) + 0.01 * torch.randn(n, d, generator=g)


def weights(rows=64, d=128, seed=1):
    return torch.randn(rows, d, generator=torch.Generator().manual_seed(seed))


def output_error(W, Q, X):
    return ((X @ W.T - X @ Q.T) ** 2).mean().item()


def test_identity_hessian_reduces_gptq_to_round_to_nearest():
    W = weights()
    H = torch.eye(W.shape[1])
    assert torch.allclose(gptq(W, H, CONFIGS, damp=0.0), rtn(W, CONFIGS), atol=1e-6)


def test_gptq_beats_rtn_on_the_layer_output():
    X, W = correlated_inputs(), weights()
    Q, R = gptq(W, hessian(X), CONFIGS), rtn(W, CONFIGS)
    for c in range(len(CONFIGS)):
        assert output_error(W, Q[c], X) < output_error(W, R[c], X)


def test_batched_configurations_equal_one_at_a_time():
    X, W = correlated_inputs(), weights()
    H = hessian(X)
    together = gptq(W, H, CONFIGS)
    for c, cfg in enumerate(CONFIGS):
        assert torch.allclose(together[c], gptq(W, H, [cfg])[0], atol=1e-5)


@pytest.mark.parametrize("act_order", [False, True])
def test_every_group_lies_on_a_grid_of_2_to_the_bits_levels(act_order):
    X, W = correlated_inputs(), weights()
    Q = gptq(W, hessian(X), CONFIGS, act_order=act_order)
    for c, cfg in enumerate(CONFIGS):
        g = cfg.group_size if cfg.group_size > 0 else W.shape[1]
        if act_order:  # groups follow the permuted columns: count levels per row, over all its groups
            assert len(torch.unique(Q[c, 0])) <= 2**cfg.bits * (W.shape[1] // g)
            continue
        for j in range(0, W.shape[1], g):
            assert len(torch.unique(Q[c, 0, j : j + g])) <= 2**cfg.bits


def test_act_order_returns_columns_in_the_original_order():
    X, W = correlated_inputs(), weights()
    Q = gptq(W, hessian(X), [QuantConfig(8, -1)], act_order=True)[0]
    assert (Q - W).abs().max() < 0.05  # 8-bit per-channel: close to W, column for column


def test_dead_inputs_zero_their_weights():
    X = correlated_inputs()
    X[:, 5] = 0.0
    Q = gptq(weights(), hessian(X), [QuantConfig(4, 32)])[0]
    assert torch.all(Q[:, 5] == 0)  # exact: the solver sets dead columns to zero, nothing is computed there


def test_symmetric_zero_point_is_the_grid_centre():
    w = weights().unsqueeze(0)
    scale, zero = find_params(w, torch.tensor([4]), torch.tensor([True]))
    assert torch.all(zero == 8)  # exact: (2^B - 1 + 1) / 2 in integers-valued floats
    q = quantize(w, scale, zero, torch.tensor([4]))
    steps = q / scale[..., None]
    assert torch.allclose(steps, steps.round(), atol=1e-4)  # every value is a whole number of steps from 0


@pytest.mark.parametrize("act_order", [False, True])
def test_one_hessian_per_configuration_equals_one_at_a_time(act_order):
    W = weights()
    Hs = torch.stack([hessian(correlated_inputs(seed=10 + c)) for c in range(len(CONFIGS))])
    Hs[1, 7, :] = Hs[1, :, 7] = 0.0  # a dead input in one configuration's Hessian only
    together = gptq(W, Hs, CONFIGS, act_order=act_order)
    for c, cfg in enumerate(CONFIGS):
        assert torch.allclose(together[c], gptq(W, Hs[c], [cfg], act_order=act_order)[0], atol=1e-5)
    assert torch.all(together[1, :, 7] == 0) and torch.any(together[0, :, 7] != 0)


def test_per_configuration_hessians_that_are_equal_give_the_shared_result():
    X, W = correlated_inputs(), weights()
    H = hessian(X)
    stacked = H.expand(len(CONFIGS), -1, -1)
    assert torch.allclose(gptq(W, stacked, CONFIGS, act_order=True), gptq(W, H, CONFIGS, act_order=True), atol=1e-5)


def test_a_hessian_of_the_wrong_shape_is_refused():
    W = weights()
    with pytest.raises(ValueError, match="H must be"):
        gptq(W, torch.eye(W.shape[1]).expand(len(CONFIGS) + 1, -1, -1), CONFIGS)


@pytest.mark.parametrize("act_order", [False, True])
def test_static_groups_fix_each_grid_from_the_unquantized_weights(act_order):
    X, W = correlated_inputs(), weights()
    cfg = QuantConfig(4, 32)
    Q = gptq(W, hessian(X), [cfg], act_order=act_order, static_groups=True)[0]
    for j in range(0, W.shape[1], 32):  # every value of a group is on the RTN grid of the original group
        s, z = find_params(W[None, :, j : j + 32], torch.tensor([4]), torch.tensor([False]))
        steps = Q[:, j : j + 32] / s[0, :, None] + z[0, :, None]
        assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert output_error(W, Q, X) < output_error(W, rtn(W, [cfg])[0], X)
    # identity Hessian: no error feedback, so static and lazy grids coincide with RTN
    assert torch.allclose(gptq(W, torch.eye(W.shape[1]), CONFIGS, damp=0.0, static_groups=True), rtn(W, CONFIGS))
