"""The model catalog: every entry against its maker's published parameter count, and against real config.json files."""

import json
import re
from pathlib import Path

import pytest

from advisor import catalog
from advisor.catalog import CATALOG, CatalogError, active_input_embedding, from_config, load_catalog, lookup

CONFIGS = Path(__file__).parent / "data" / "configs"


def test_catalog_holds_at_least_fifty_models_with_sources():
    assert len(CATALOG) >= 50
    names = [m.name for m in CATALOG]
    assert len(set(names)) == len(names)
    for m in CATALOG:
        assert m.params_source and m.config_source, m.name
        assert m.config_source.startswith(("https://huggingface.co/", "github:")), m.name


@pytest.mark.parametrize("m", CATALOG, ids=lambda m: m.name)
def test_every_entry_says_whether_its_config_was_checked_against_the_real_file(m):
    # verified: compared field by field with a verbatim copy of the config.json, named repo and path;
    # not verified: written from the published architecture, and the source says so
    if m.config_verified:
        assert "verbatim" in m.config_source and "not verified" not in m.config_source, m.name
        assert m.config_source.startswith("github:"), m.name  # owner/repo path@commit of the copy
    else:
        assert "not verified" in m.config_source, m.name


# Not verified and not cross-checked: no maintained package found transcribes the R1 distills of Qwen (litgpt has only
# their base models, Qwen2.5-Math-1.5B/7B and Qwen2.5-14B/32B, megatron-bridge the latter two: not the distills' files)
UNCHECKED = {
    "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
}  # fmt: skip
_CHECK = re.compile(r"against [a-z0-9][a-z0-9._-]*==\d[\w.]* \S+ \([^)]+\): agrees on \w")


@pytest.mark.parametrize("m", CATALOG, ids=lambda m: m.name)
def test_every_unverified_entry_was_cross_checked_against_a_transcription_or_is_listed_as_not(m):
    # config_checked names package==version, path and entry of each transcription, and the fields that agree
    if m.config_verified or m.name in UNCHECKED:
        assert m.config_checked == "", m.name
    else:
        assert m.config_checked.startswith("cross-checked field by field"), m.name
        assert _CHECK.search(m.config_checked), m.name


def test_the_unchecked_list_names_only_unverified_catalog_entries():
    by_name = {m.name: m for m in CATALOG}
    assert set(by_name) >= UNCHECKED
    assert not any(by_name[n].config_verified for n in UNCHECKED)


def test_the_shipped_catalog_marks_what_was_verified():
    verified = [m.name for m in CATALOG if m.config_verified]
    assert len(verified) >= 26
    assert {"qwen3-8b", "qwen3-30b-a3b", "llama-3.1-8b", "gpt-oss-20b", "deepseek-r1"} <= set(verified)


@pytest.mark.parametrize("m", CATALOG, ids=lambda m: m.name)
def test_parameter_count_matches_the_published_total(m):
    # 2%: makers publish rounded totals (e.g. "7.3B", "46.7B"); a wrong layer, width or vocabulary is off by more
    assert m.arch.total_params() / 1e9 == pytest.approx(m.params_b, rel=0.02)


@pytest.mark.parametrize("m", [m for m in CATALOG if m.arch.is_moe], ids=lambda m: m.name)
def test_moe_active_parameters_match_the_published_figure(m):
    assert m.active_params_b is not None
    active = m.arch.active_params(input_embedding=active_input_embedding(m)) / 1e9
    assert active == pytest.approx(m.active_params_b, rel=0.02)  # same rounding of published figures as above
    assert m.arch.active_params() < m.arch.total_params()


REQUIRED = [
    "llama-3.3-70b", "llama-3.1-405b", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b",
    "llama-3-8b", "llama-3-70b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b",
    "qwen2.5-32b", "qwen2.5-72b", "qwen3-0.6b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "mistral-7b",
    "mixtral-8x7b", "mixtral-8x22b", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "gemma-3-1b", "gemma-3-4b",
    "gemma-3-12b", "gemma-3-27b", "phi-3-mini", "phi-3-medium", "phi-4", "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b", "gpt-oss-20b",
    "gpt-oss-120b", "olmo-2-7b", "olmo-2-13b",
]  # fmt: skip


@pytest.mark.parametrize("name", REQUIRED)
def test_the_models_people_deploy_are_in_the_catalog(name):
    assert lookup(name).name == name


@pytest.mark.parametrize(
    "alias, name",
    [("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"), ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
     ("google/gemma-2-9b-it", "gemma-2-9b"), ("google/gemma-3-27b-it", "gemma-3-27b"),
     ("meta-llama/Llama-2-13b-chat-hf", "llama-2-13b"), ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-12b"),
     ("Qwen/Qwen3-8B-Base", "qwen3-8b"), ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
     ("allenai/OLMo-2-1124-7B-Instruct", "olmo-2-7b"), ("Qwen3-30B-A3B-Instruct-2507", "qwen3-30b-a3b")],
)  # fmt: skip
def test_post_trained_ids_resolve_to_their_architecture(alias, name):
    assert lookup(alias).name == name


@pytest.mark.parametrize(
    "fixture, name",
    [("llama-3.1-8b", "llama-3.1-8b"), ("llama-3.2-3b", "llama-3.2-3b"), ("qwen2.5-7b", "qwen2.5-7b"),
     ("qwen3-8b", "qwen3-8b"), ("qwen3-30b-a3b", "qwen3-30b-a3b"), ("gpt-oss-20b", "gpt-oss-20b")],
)  # fmt: skip
def test_real_config_json_gives_the_catalog_architecture(fixture, name):
    info = from_config(CONFIGS / f"{fixture}.json")
    assert info.arch == lookup(name).arch
    assert info.family == lookup(name).family


def test_moe_config_counts_every_expert_and_reports_active_parameters():
    info = from_config(CONFIGS / "qwen3-30b-a3b.json")
    a = info.arch
    assert a.is_moe and a.num_experts == 128 and a.experts_per_token == 8 and a.moe_intermediate_size == 768
    experts = a.num_layers * a.num_experts * 3 * a.hidden_size * a.moe_intermediate_size
    assert a.linear_params() > experts  # all 128 experts of all 48 layers are in the count
    assert info.active_params_b is not None and info.active_params_b < info.params_b / 5


def test_layer_types_and_sliding_window_are_read():
    gpt = from_config(CONFIGS / "gpt-oss-20b.json").arch
    assert gpt.sliding_window == 128 and gpt.attention_kinds()[:2] == ("sliding", "full")
    assert gpt.qkv_bias and gpt.o_bias and gpt.expert_bias
    gemma2 = lookup("gemma-2-9b").arch
    assert gemma2.attention_kinds().count("sliding") == 21 and gemma2.sliding_window == 4096
    gemma3 = lookup("gemma-3-27b").arch  # five local layers to one global layer
    assert gemma3.attention_kinds()[:6] == ("sliding",) * 5 + ("full",) and gemma3.sliding_window == 1024
    assert lookup("mistral-7b").arch.attention_kinds() == ("sliding",) * 32
    assert lookup("qwen2.5-7b").arch.sliding_window is None  # use_sliding_window: false


def test_text_config_nesting_and_type_defaults(tmp_path):
    # the shape of google/gemma-3-4b-it's config.json: text_config omits what Gemma3TextConfig defaults
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                           "num_hidden_layers": 34, "sliding_window": 1024},
           "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                             "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                             "patch_size": 14, "vision_use_head": False}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    info = from_config(tmp_path)
    assert info.arch == lookup("gemma-3-4b").arch and info.family == "Gemma-3"
    assert info.arch.vision_params == pytest.approx(417e6, rel=0.01)  # Gemma 3 report: a 417M vision encoder


def test_mla_architecture_counts_latent_projections():
    a = lookup("deepseek-v3").arch
    assert a.is_mla and a.kv_lora_rank == 512 and a.qk_rope_head_dim == 64 and a.dense_layers == 3
    assert a.shared_expert_intermediate_size == 2048


def test_a_bad_catalog_entry_fails_with_one_line(tmp_path):
    doc = json.loads((Path(catalog.__file__).with_name("data") / "catalog.json").read_text())
    doc["models"][3]["params_b"] = -1
    bad = tmp_path / "catalog.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(CatalogError, match=r"entry 3 \(qwen3-8b\): params_b: .*greater than 0") as exc:
        load_catalog(bad)
    assert "\n" not in str(exc.value)
    doc["models"][3]["params_b"] = 8.2
    del doc["models"][3]["config"]["hidden_size"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(CatalogError, match=r"entry 3 \(qwen3-8b\): config lacks a usable field 'hidden_size'"):
        load_catalog(bad)


def test_the_shipped_catalog_validates_and_is_what_the_advisor_loads_unchecked():
    # the advisor skips pydantic on its own file at start-up; this is the check it relies on
    assert load_catalog(validate=True) == CATALOG
