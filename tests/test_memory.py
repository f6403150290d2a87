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
