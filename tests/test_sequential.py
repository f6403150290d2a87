"""Whole-model GPTQ over many configurations (calibrate.sequential) on the shipped strata-world-xs checkpoint."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from calibrate import world  # noqa: E402
from calibrate.gptq import QuantConfig, gptq, hessian, rtn  # noqa: E402
from calibrate.rtn import restore  # noqa: E402
from calibrate.sequential import decoder_layers, quantize_model, swap_in  # noqa: E402

XS = Path(__file__).resolve().parents[1] / "examples" / "models" / "strata-world-xs"
CONFIGS = [QuantConfig(4, 32), QuantConfig(3, 64), QuantConfig(2, -1), QuantConfig(4, 32, sym=True)]
CB, SEQLEN = 16, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids spinning against other processes on a shared machine (10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return transformers.AutoModelForCausalLM.from_pretrained(XS).eval()


@pytest.fixture(scope="module")
def calib():
    """CB sequences of SEQLEN tokens of the world's own training text: the activations the model was trained on."""
    tok = transformers.AutoTokenizer.from_pretrained(XS)
    ids = tok(" ".join(world.corpus(world.generate())[:400]))["input_ids"]
    return torch.tensor(ids[: CB * SEQLEN]).reshape(CB, SEQLEN)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def linear_inputs(model, ids):
    """Each linear's full-precision inputs (tokens, in_features) over the calibration batch."""
    seen: dict = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"):
            hooks.append(
                m.register_forward_pre_hook(lambda _, a, n=name: seen.__setitem__(n, a[0].reshape(-1, a[0].shape[-1])))
            )
    with torch.no_grad():
        model(ids, use_cache=False)
    for h in hooks:
        h.remove()
    return seen


def weight_of(model, name):
    return dict(model.named_modules())[name].weight


@pytest.mark.parametrize("method", ["gptq", "rtn"])
def test_the_model_weights_are_unchanged(model, calib, method):
    before = snapshot(model)
    results, timings = quantize_model(model, calib if method == "gptq" else None, CONFIGS[:2], method=method)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(results) == 2 and [r.config for r in results] == CONFIGS[:2]
    assert set(timings) == {"capture", "hessian", "solve", "propagate", "total"}
    # every block linear, none outside the blocks (the tied head)
    assert len(results[0].weights) == 7 * 2 and not any("lm_head" in n for n in results[0].weights)


def test_swap_in_and_restore_round_trip_exactly(model, calib):
    before = snapshot(model)
    (result,), _ = quantize_model(model, calib, [QuantConfig(3, 32)])
    originals = swap_in(model, result.weights)
    for name, w in result.weights.items():
        assert torch.equal(weight_of(model, name), w)
        assert not torch.equal(w, originals[name])
    restore(model, originals)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


# propagate="original" solves with one shared Hessian: test_original_propagation_is_gptq_on_the_full_precision_inputs
@pytest.mark.parametrize(("propagate", "act_order"), [("quantized", False), ("quantized", True)])
def test_configurations_together_equal_one_at_a_time(model, calib, propagate, act_order):
    together, _ = quantize_model(model, calib, CONFIGS, propagate=propagate, act_order=act_order, batch_size=5)
    for c, cfg in enumerate(CONFIGS):
        (alone,), _ = quantize_model(model, calib, [cfg], propagate=propagate, act_order=act_order, batch_size=5)
        for name, w in alone.weights.items():
            assert torch.allclose(together[c].weights[name], w, atol=1e-5), (cfg, name)


def test_original_propagation_is_gptq_on_the_full_precision_inputs(model, calib):
    results, _ = quantize_model(model, calib, CONFIGS, propagate="original", batch_size=CB)
    for name, x in linear_inputs(model, calib).items():
        expected = gptq(weight_of(model, name).detach(), hessian(x), CONFIGS)
        for c in range(len(CONFIGS)):
            assert torch.allclose(results[c].weights[name], expected[c], atol=1e-6), name


def test_true_sequential_groups_follow_the_block(model, calib):
    said: list[str] = []
    quantize_model(model, calib, CONFIGS[:2], progress=said.append)
    layer0 = [s.split(": ")[1].split(" (")[0] for s in said if s.startswith("layer 1/")]
    assert layer0 == [
        "self_attn.q_proj, self_attn.k_proj, self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj, mlp.up_proj",
        "mlp.down_proj",
    ]
    assert "(1 Hessian pass(es))" in said[0] and "(2 Hessian pass(es))" in said[1]  # shared only at the very start
    flat, _ = quantize_model(model, calib, CONFIGS[:1], true_sequential=False)
    seq, _ = quantize_model(model, calib, CONFIGS[:1])
    name = "model.layers.0.self_attn.q_proj"  # first group: same inputs either way
    # the same solve on the same inputs; the bound is far below one grid step, so any changed rounding fails
    torch.testing.assert_close(flat[0].weights[name], seq[0].weights[name], atol=1e-6, rtol=0)
    assert not torch.equal(
        flat[0].weights["model.layers.0.mlp.down_proj"], seq[0].weights["model.layers.0.mlp.down_proj"]
    )


def test_more_bits_stay_closer_to_the_model(model, calib):
    configs = [QuantConfig(b, 32) for b in (8, 4, 3, 2)]
    results, _ = quantize_model(model, calib, configs)
    with torch.no_grad():
        ref = model(calib).logits
        errors = []
        for r in results:
            originals = swap_in(model, r.weights)
            errors.append(((model(calib).logits - ref) ** 2).mean().item() / (ref**2).mean().item())
            restore(model, originals)
    assert errors[0] < 1e-3, errors
    assert errors == sorted(errors), errors
    w8 = results[0].weights["model.layers.0.mlp.down_proj"]
    w = weight_of(model, "model.layers.0.mlp.down_proj")
    assert ((w8 - w).norm() / w.norm()).item() < 0.01


def test_gptq_beats_rtn_on_each_layer_output(model, calib):
    configs = [QuantConfig(4, 32), QuantConfig(3, 32), QuantConfig(3, -1, sym=True)]
    g, _ = quantize_model(model, calib, configs, propagate="original")
    r, _ = quantize_model(model, None, configs, method="rtn")
    for name, x in linear_inputs(model, calib).items():
        w = weight_of(model, name).detach()
        torch.testing.assert_close(r[0].weights[name], rtn(w, configs[:1])[0], atol=1e-6, rtol=0)  # << one step
        for c in range(len(configs)):
            err_g = (x @ (g[c].weights[name] - w).T).norm()
            err_r = (x @ (r[c].weights[name] - w).T).norm()
            assert err_g <= err_r, (name, configs[c])


def test_every_group_has_at_most_2_to_the_bits_levels(model, calib):
    results, _ = quantize_model(model, calib, CONFIGS)
    for r in results:
        for w in r.weights.values():
            g = r.config.group_size if r.config.group_size > 0 else w.shape[1]
            assert max(torch.unique(group).numel() for group in w.reshape(-1, g)) <= 2**r.config.bits


def test_bad_input_is_refused_with_one_clear_error(model, calib):
    with pytest.raises(ValueError, match="no decoder layers"):
        quantize_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), calib, CONFIGS)
    with pytest.raises(ValueError, match="no decoder layers"):
        decoder_layers(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="propagate"):
        quantize_model(model, calib, CONFIGS, propagate="fp16")
    with pytest.raises(ValueError, match="method"):
        quantize_model(model, calib, CONFIGS, method="awq")
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, calib[:0], CONFIGS)
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, None, CONFIGS)
    with pytest.raises(ValueError, match="no configurations"):
        quantize_model(model, calib, [])
    with pytest.raises(ValueError, match="batch_size"):
        quantize_model(model, calib, CONFIGS, batch_size=0)
    with pytest.raises(ValueError, match="does not divide"):
        quantize_model(model, calib, [QuantConfig(4, 48)])
