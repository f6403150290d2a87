"""Engine kernel support and KV dtypes, read from advisor/data/engines.json."""

import json

import pytest

from advisor import engines
from advisor.engines import EngineError, check_kv_dtype, kernel_support, kv_dtypes, load_engines


def test_every_rule_names_its_source_and_version():
    table = load_engines()
    assert set(table) == {"vllm", "sglang", "transformers"}
    for e in table.values():
        assert e.version_checked and e.kv_source
        assert all(r.source and r.kernel for r in e.rules)
        for r in e.rules:  # github:owner/repo path@commit of the engine file the numbers were read from
            assert r.source.startswith("github:") and "@" in r.source, r.source


@pytest.mark.parametrize(
    "eng, bits, group, sym, act, want",
    [("vllm", 4, 128, True, False, "fast"), ("vllm", 4, 128, True, True, "fast"), ("vllm", 8, -1, True, False, "fast"),
     ("vllm", 4, 128, False, False, "slow"), ("vllm", 3, 128, True, False, "slow"),
     ("vllm", 2, 64, True, False, "slow"),
     ("vllm", 4, 256, True, False, "slow"), ("vllm", 5, 128, True, False, "unsupported"),
     ("vllm", 2.5, 128, True, False, "unsupported"), ("sglang", 4, 32, True, False, "fast"),
     ("sglang", 3, 128, True, False, "slow"), ("transformers", 4, 128, False, True, "fast"),
     ("transformers", 8, 128, False, False, "slow"), ("transformers", 6, 128, True, False, "unsupported"),
     ("transformers", 4, 256, True, False, "unsupported"), ("transformers", 3, 16, False, False, "slow"),
     ("sglang", 8, 128, False, True, "slow"),
     ("any", 3, 1024, False, True, "fast")],
)  # fmt: skip
def test_kernel_support(eng, bits, group, sym, act, want):
    assert kernel_support(eng, bits, group, sym, act) == want


def test_kv_dtypes_per_engine():
    assert kv_dtypes("vllm") == ("bf16", "fp8")
    assert kv_dtypes("transformers") == ("bf16",)
    check_kv_dtype("sglang", "fp8")
    with pytest.raises(EngineError, match="--kv-dtype fp8 is not offered by transformers; use --kv-dtype bf16"):
        check_kv_dtype("transformers", "fp8")


def test_unknown_engine_is_one_clear_error():
    with pytest.raises(EngineError, match=r"unknown --engine 'tgi'; use one of vllm, sglang, transformers, any"):
        kernel_support("tgi", 4, 128, True, False)
    assert issubclass(EngineError, ValueError)


def test_a_bad_engines_file_fails_with_one_line(tmp_path):
    doc = json.loads(engines._FILE.read_text())
    doc["engines"]["vllm"]["rules"][0]["support"] = "blazing"
    bad = tmp_path / "engines.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(EngineError, match=r"engines.vllm.rules.0.support") as exc:
        load_engines(bad)
    assert "\n" not in str(exc.value)
