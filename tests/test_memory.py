"""The memory model against real checkpoints, and the catalog's parameter counts against model cards."""

import pytest

from advisor.catalog import from_config, from_params, lookup
from advisor.memory import quantized_bytes, unquantized_bytes

GIB = 2**30


@pytest.mark.parametrize(
    "name, published_b",
    [("qwen3-0.6b", 0.596), ("qwen3-8b", 8.19), ("qwen3-32b", 32.76), ("llama-3-8b", 8.03),
     ("llama-3.2-1b", 1.24), ("llama-2-7b", 6.74), ("mistral-7b", 7.24)],
)  # fmt: skip
def test_parameter_count_from_architecture_matches_the_model(name, published_b):
    assert lookup(name).arch.total_params() / 1e9 == pytest.approx(published_b, rel=0.005)


# Real checkpoint sizes, as published (3 significant digits), GPTQ 4-bit:
#  TheBloke/Llama-2-7b-Chat-GPTQ README "Provided files": 128g 3.90 GB, 64g 4.02 GB, 32g 4.28 GB
#  TheBloke/Mistral-7B-Instruct-v0.1-GPTQ README: 128g 4.16 GB, 32g 4.57 GB
#  JunHowie/Qwen3-8B-GPTQ-Int4 loaded by vLLM: 5.68 GiB of weights
@pytest.mark.parametrize(
    "name, group, size_bytes",
    [("llama-2-7b", 128, 3.90e9), ("llama-2-7b", 64, 4.02e9), ("llama-2-7b", 32, 4.28e9),
     ("mistral-7b", 128, 4.16e9), ("mistral-7b", 32, 4.57e9), ("qwen3-8b", 128, 5.68 * GIB)],
)  # fmt: skip
def test_memory_model_matches_published_gptq_checkpoints(name, group, size_bytes):
    got = quantized_bytes(lookup(name).arch, 4, group).total
    assert got == pytest.approx(size_bytes, rel=0.005)  # within rounding of the published figure


def test_memory_grows_with_bits_and_shrinking_groups():
    arch = lookup("qwen3-8b").arch
    sizes = [quantized_bytes(arch, b, 128).total for b in (2, 3, 4, 8)]
    assert sizes == sorted(sizes)
    assert quantized_bytes(arch, 4, 32).total > quantized_bytes(arch, 4, 128).total > quantized_bytes(arch, 4, -1).total
    assert quantized_bytes(arch, 8, 128).total < unquantized_bytes(arch)


def test_untied_lm_head_stays_at_16_bits():
    arch = lookup("qwen3-8b").arch
    assert quantized_bytes(arch, 4, 128).fp16 == 2 * (2 * 151936 * 4096 + arch.norm_params())


def test_config_json_gives_the_same_architecture(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(
        '{"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,'
        ' "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,'
        ' "tie_word_embeddings": false}'
    )
    info = from_config(tmp_path)
    assert info.family == "Qwen3"
    assert info.arch == lookup("qwen3-8b").arch


def test_size_and_family_scale_the_nearest_architecture():
    info = from_params(20.0, "Qwen3")
    assert info.approximate and info.arch.hidden_size == 5120
    assert info.arch.total_params() / 1e9 == pytest.approx(20.0, rel=0.05)


# --- the whole memory bill ----------------------------------------------------------------------------------------
from advisor.memory import (  # noqa: E402
    RUNTIME_ALLOWANCE_BYTES,
    MemoryBillError,
    kv_cache_bytes,
    memory_bill,
)


def test_kv_cache_of_llama_3_1_8b_at_8k():
    # 32 layers x (K and V) x 8 KV heads x 128 head_dim x 2 bytes (bf16) x 8192 tokens
    want = 32 * 2 * 8 * 128 * 2 * 8192
    assert want == 1_073_741_824
    assert kv_cache_bytes(lookup("llama-3.1-8b").arch, 8192, 1, "bf16") == want
    assert kv_cache_bytes(lookup("llama-3.1-8b").arch, 8192, 4, "bf16") == 4 * want
    assert kv_cache_bytes(lookup("llama-3.1-8b").arch, 8192, 1, "fp8") == want // 2


def test_gemma_2_sliding_layers_are_capped_at_their_window():
    arch = lookup("gemma-2-9b").arch  # 42 layers, 21 sliding (window 4096), 8 KV heads x 256
    per_token_layer = 2 * 8 * 256 * 2
    ctx = 16384
    want = (21 * ctx + 21 * 4096) * per_token_layer
    assert kv_cache_bytes(arch, ctx) == want
    assert kv_cache_bytes(arch, 4096) == 42 * 4096 * per_token_layer  # below the window nothing is capped
    assert kv_cache_bytes(arch, ctx, kv_dtype="fp8") == want // 2


def test_mla_caches_one_latent_per_token():
    arch = lookup("deepseek-v3").arch  # 61 layers x (512 latent + 64 rope) x 2 bytes
    assert kv_cache_bytes(arch, 1000) == 61 * (512 + 64) * 2 * 1000


@pytest.mark.parametrize("kw, flag", [({"context": 0}, "--context"), ({"context": 1.5}, "--context"),
                                      ({"batch": -1}, "--batch"), ({"kv_dtype": "int4"}, "--kv-dtype")])  # fmt: skip
def test_bad_context_batch_or_dtype_is_one_line(kw, flag):
    args = {"context": 128, "batch": 1, "kv_dtype": "bf16", **kw}
    with pytest.raises(MemoryBillError, match=flag):
        kv_cache_bytes(lookup("qwen3-8b").arch, args["context"], args["batch"], args["kv_dtype"])


def test_memory_bill_adds_weights_kv_cache_and_runtime():
    arch = lookup("qwen3-8b").arch
    bill = memory_bill(arch, 4, 128, context=32768, batch=2, kv_dtype="fp8")
    assert bill.weights == quantized_bytes(arch, 4, 128).total
    assert bill.kv_cache == kv_cache_bytes(arch, 32768, 2, "fp8")
    assert bill.runtime == RUNTIME_ALLOWANCE_BYTES
    assert bill.total == bill.weights + bill.kv_cache + bill.runtime
    assert bill.gb()["total"] == pytest.approx(bill.total / 1e9)  # same number, decimal GB
    assert memory_bill(arch, 16, -1, context=1).weights == unquantized_bytes(arch)


def test_moe_weights_store_every_expert():
    arch = lookup("mixtral-8x7b").arch
    one_expert = 3 * 4096 * 14336
    q = quantized_bytes(arch, 4, 128)
    assert q.qweight > 32 * 8 * one_expert * 4 / 8  # all 8 experts of all 32 layers at 4 bits
    assert unquantized_bytes(arch) == 2 * arch.total_params()
