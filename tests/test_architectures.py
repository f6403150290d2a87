"""Real architectures, tiny and random (tests/tiny_sweep.py: 2 layers, hidden 64, the world's tokenizer and tasks):
the sweep stores rows, quantized weights lie on the B-bit grid, GPTQ's layer-output error is below RTN's, and an MoE
expert no calibration token reaches falls back to RTN (never all-zero), counted in the rows.

One model per family per module (a fixture); each family's test runs the sweep (reference + B=4 G=32 at Cb=4,
8 items per task) and one GPTQ + one RTN quantization in process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_sweep import CALIB, random_model, tiny_spec  # noqa: E402

from calibrate.gptq import QuantConfig  # noqa: E402
from calibrate.sequential import (  # noqa: E402
    ArchitectureError,
    decoder_layers,
    layer_hessians,
    quantize_model,
    swap_in,
    weights,
)
from calibrate.spec import parse_spec  # noqa: E402
from calibrate.store import Store  # noqa: E402
from calibrate.sweep import run_sweep  # noqa: E402

B, G, CB, SEQLEN = 4, 32, 4, 16
LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}  # fmt: skip
# family -> (transformers config class, overrides of tiny_sweep.random_model's defaults)
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama-3": ("LlamaConfig", {"head_dim": 16, "rope_parameters": LLAMA3_ROPE}),
    "mistral": ("MistralConfig", {"head_dim": 16}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    # many experts, top-1: with 64 calibration tokens some expert is reached by none
    "qwen3-moe": (
        "Qwen3MoeConfig",
        {"head_dim": 16, "num_experts": 16, "num_experts_per_tok": 1, "moe_intermediate_size": 32},
    ),
    "mixtral": ("MixtralConfig", {"head_dim": 16, "num_local_experts": 16, "num_experts_per_tok": 1}),
    "phi-3": ("Phi3Config", {}),  # fused qkv_proj and gate_up_proj
    # sliding window 4 < seqlen 16: the sliding and the full-attention blocks really take different masks
    "gemma-2": ("Gemma2Config", {"head_dim": 16, "sliding_window": 4}),
    "gemma-3": (
        "Gemma3TextConfig",
        {"head_dim": 16, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]},
    ),
    "opt": ("OPTConfig", {"ffn_dim": 128, "word_embed_proj_dim": 64}),
    "gpt-2": ("GPT2Config", {"n_positions": 64}),  # Conv1D: weights stored (in, out)
}
if hasattr(transformers, "GptOssConfig"):  # experts stored transposed (experts, in, out), with biases
    FAMILIES["gpt-oss"] = (
        "GptOssConfig",
        {
            "head_dim": 16, "num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 64,
            "sliding_window": 4, "rope_parameters": {"rope_type": "default", "rope_theta": 150000.0},
        },
    )  # fmt: skip
MOE = {"qwen3-moe", "mixtral", "gpt-oss"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids spinning against other processes on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {}


def checkpoint(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    if family not in built:
        cls, over = FAMILIES[family]
        built[family] = random_model(tmp_path_factory.mktemp(family) / family, getattr(transformers, cls), **over)
    return built[family]


def calibration(path: Path) -> Any:
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ids = tok(CALIB.read_text())["input_ids"]
    assert len(ids) >= CB * SEQLEN and 2 not in ids[: CB * SEQLEN]  # the world's words, none unknown (<unk> = 2)
    return torch.tensor(ids[: CB * SEQLEN]).reshape(CB, SEQLEN)


def error(dw: Any, H: Any) -> float:
    """tr(ΔW H ΔWᵀ): the layer-output error on the calibration inputs (up to 2/n), for ΔW (out, in)."""
    dw = dw.float()
    return float(torch.einsum("oi,ij,oj->", dw, H, dw))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_family_sweeps_and_quantizes_on_the_grid_with_gptq_below_rtn(
    family: str, built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = checkpoint(built, tmp_path_factory, family)
    store = tmp_path / "s.sqlite"
    spec = parse_spec(
        tiny_spec(store, models=[{"model": str(path), "family": family}], bits=[B], group_sizes=[G], calib_samples=[CB])
    )
    summary = run_sweep(spec)
    assert summary.ran == 2  # the unquantized reference and B=4 G=32
    with Store.open(store) as s:
        rows = list(s.rows())
    quantized = [r for r in rows if r.method == "GPTQ"]
    assert quantized and {r.bits for r in quantized} == {float(B)} and {r.group_size for r in quantized} == {G}
    assert all((r.n_items or 0) > 0 for r in rows)
    if family in MOE:
        assert all(isinstance(r.extra["experts_rtn_fallback"], int) for r in quantized)

    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    ids = calibration(path)
    cfg = QuantConfig(B, G)
    (g,), _ = quantize_model(model, ids, [cfg], propagate="original", batch_size=CB)
    (r,), _ = quantize_model(model, None, [cfg], method="rtn")
    prefix, layers = decoder_layers(model)
    ws = {f"{prefix}.{i}.{n}": w for i, layer in enumerate(layers) for n, w in weights(layer, skip=()).items()}
    assert set(g.weights) == set(r.weights) == set(ws) and ws
    hs = layer_hessians(model, ids, batch_size=CB)
    fallen = set(g.rtn_fallback)
    compared = 0
    for name, w in ws.items():
        gq, rq, orig = w.rows(g.weights[name]), w.rows(r.weights[name]), w.rows().detach()
        for e in range(orig.shape[0]):
            for q in (gq[e], rq[e]):  # at most 2^B levels in every group of G inputs of a row
                levels = max(torch.unique(group).numel() for group in q.reshape(-1, G))
                assert levels <= 2**B, (name, e)
            assert gq[e].abs().amax() > 0, (name, e)  # never an all-zero matrix (an expert deleted)
            H, n = hs[(name, None if w.experts is None else e)]
            where = name if w.experts is None else f"{name}[{e}]"
            if n == 0:  # no calibration token reached it: RTN, exactly
                assert where in fallen and torch.equal(gq[e], rq[e]), where
                continue
            assert where not in fallen
            err_g, err_r = error(gq[e] - orig[e], H), error(rq[e] - orig[e], H)
            assert err_g < err_r, (where, err_g, err_r)
            compared += 1
    assert compared >= len(ws)  # every dense weight, and at least one expert per experts parameter


@pytest.mark.parametrize("family", sorted(MOE & set(FAMILIES)))
def test_an_expert_no_token_reaches_falls_back_to_rtn_and_is_counted(
    family: str, built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = checkpoint(built, tmp_path_factory, family)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    ids = calibration(path)[:1, :4]  # 4 tokens, top-1 or top-2 of 8-16 experts: most experts see none
    configs = [QuantConfig(B, G), QuantConfig(3, G)]
    # full-precision inputs: the routing is the model's own, the same as layer_hessians sees
    results, _ = quantize_model(model, ids, configs, propagate="original", batch_size=1)
    hs = layer_hessians(model, ids, batch_size=1)
    unreached = {(n.rsplit(".", 1)[0], e) for (n, e), (_, k) in hs.items() if e is not None and k == 0}
    assert unreached  # the case this test is about
    for res in results:
        assert res.experts_rtn_fallback == len(unreached)
        listed = {(w.split("[")[0].rsplit(".", 1)[0], int(w.split("[")[1][:-1])) for w in res.rtn_fallback}
        assert listed == unreached
        for name, q in res.weights.items():
            if q.dim() == 3:
                assert (q.flatten(1).abs().amax(dim=1) > 0).all(), name  # no expert all-zero
        originals = swap_in(model, res.weights)  # and the quantized model still runs
        try:
            assert torch.isfinite(model(ids).logits).all()
        finally:
            from calibrate.rtn import restore

            restore(model, originals)


def test_a_model_without_blocks_is_one_line_naming_its_architecture() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(8, 4), torch.nn.LayerNorm(4))
    with pytest.raises(ArchitectureError) as err:
        quantize_model(model, torch.zeros(1, 4, dtype=torch.long), [QuantConfig(4, -1)])
    message = str(err.value)
    assert "\n" not in message and message.startswith("Sequential") and "no decoder layers" in message
    assert "Conv1D" in message and "Gemma-2" in message
