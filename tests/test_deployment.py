"""Deployment fit: the whole memory bill, engine-ready configurations, handover configs and the frontier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from advisor_cli import cli

import advisor
from advisor.engines import kernel_support
from advisor.schema import Deployment

VLLM_8K = Deployment(engine="vllm", context=8192, batch=4)


def test_an_engine_answer_only_holds_configurations_the_engine_serves_fast():
    rec = advisor.recommend("llama-3.1-8b", min_ka=0.4, deployment=VLLM_8K)
    assert rec.found
    for c in [rec.recommendation, *rec.alternatives]:
        assert c is not None and c.kernel == "fast"
        assert kernel_support("vllm", c.config.bits, c.config.group_size, c.config.sym, c.config.act_order) == "fast"
    assert any("only a slow path" in e for e in rec.excluded)
    slow = advisor.recommend("llama-3.1-8b", min_ka=0.4, deployment=VLLM_8K, allow_slow=True)
    assert slow.searched > rec.searched  # the slow-path configurations come back, marked
    kinds = {c.kernel for c in [slow.recommendation, *slow.alternatives] if c is not None}
    assert kinds <= {"fast", "slow"}


def test_the_bill_adds_kv_cache_and_runtime_and_the_budget_checks_the_sum():
    rec = advisor.recommend("llama-3.1-8b", min_ka=0.4, deployment=VLLM_8K)
    c = rec.recommendation
    assert c is not None and c.memory is not None
    parts = c.memory.weights_gb + c.memory.kv_cache_gb + c.memory.runtime_gb
    assert c.memory.total_gb == pytest.approx(parts, abs=2e-4)  # each part rounded to 4 decimals
    assert c.memory.weights_gb == pytest.approx(c.memory_gb, abs=1e-4)
    # 32 layers x K,V x 8 heads x 128 x 2 bytes x 8192 tokens x 4 sequences
    assert c.memory.kv_cache_gb == pytest.approx(32 * 2 * 8 * 128 * 2 * 8192 * 4 / 1e9, abs=1e-4)
    # a budget above the weights but below the bill: weights alone fit, the deployment does not
    budget = c.memory_gb + 1.0
    assert advisor.recommend("llama-3.1-8b", min_ka=0.4, memory_gb=budget).found
    with pytest.raises(ValueError, match="in all \\(weights \\+ KV cache \\+ runtime\\)"):
        advisor.recommend("llama-3.1-8b", min_ka=0.4, memory_gb=budget, deployment=VLLM_8K)


def test_recommend_says_how_far_the_next_cheaper_configuration_falls_short():
    rec = advisor.recommend("qwen3-8b", min_ka=0.55)
    assert rec.recommendation is not None and rec.next_cheaper is not None
    n = rec.next_cheaper
    assert n.candidate.memory_gb < rec.recommendation.memory_gb and set(n.shortfall) == {"KA"}
    assert n.shortfall["KA"] == pytest.approx(0.55 - n.candidate.tiers["KA"].mean, abs=1e-4)


def test_the_frontier_is_exactly_the_non_dominated_set(capsys):
    front = advisor.frontier("qwen3-8b", targets={"KA": 0.5, "KR": 0.3})
    full = advisor.frontier("qwen3-8b", targets={"KA": 0.5, "KR": 0.3}, bits=(3, 4, 8))
    assert front.points and [p.config for p in front.points] == [p.config for p in full.points]
    mem = [p.memory_gb for p in front.points]
    assert mem == sorted(mem)
    pts = np.array([[p.tiers[t].mean for t in ("KA", "KR")] for p in front.points])
    for i in range(len(pts)):  # no frontier point beats another on memory and both tiers
        for j in range(len(pts)):
            if i != j and mem[j] <= mem[i]:
                assert not (np.all(pts[j] >= pts[i]) and (mem[j] < mem[i] or np.any(pts[j] > pts[i])))
    code, out, _ = cli(capsys, "frontier", "--model", "qwen3-8b", "--min-ka", "0.5", "--json")
    assert code == 0 and json.loads(out)["kind"] == "frontier"


@pytest.fixture
def frontier_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "front.png"
    code, _, err = cli(capsys, "frontier", "--model", "qwen3-8b", "--min-kr", "0.3", "--plot", str(path))
    assert code == 0, err
    return path


def test_the_frontier_plot_is_a_png(frontier_png):
    assert frontier_png.read_bytes()[:4] == b"\x89PNG"


def test_handover_formats(capsys):
    code, out, _ = cli(capsys, "recommend", "--model", "llama-3.1-8b", "--min-ka", "0.4", "--engine", "vllm",
                       "--emit", "gptqmodel")  # fmt: skip
    cfg = json.loads(out)
    assert code == 0 and cfg["bits"] in (4, 8) and cfg["sym"] is True and cfg["desc_act"] is False
    code, out, _ = cli(capsys, "recommend", "--model", "llama-3.1-8b", "--min-ka", "0.4", "--emit", "llmcompressor")
    recipe = yaml.safe_load(out)
    assert code == 0 and "GPTQModifier" in recipe["quant_stage"]["quant_modifiers"]
    code, out, _ = cli(capsys, "recommend", "--model", "llama-3.1-8b", "--min-ka", "0.4", "--emit", "command",
                       "--out", "ckpt")  # fmt: skip
    assert code == 0 and out.startswith("calibrate quantize --model meta-llama/Llama-3.1-8B --bits ")
    code, out, err = cli(capsys, "recommend", "--model", "qwen3-8b", "--min-kr", "0.9", "--emit", "gptqmodel")
    assert code == 3 and out == "" and "nothing to emit" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--context", "0"), "--context must be a positive integer"),
        (("--context", "8k"), "invalid int value"),
        (("--context", "4096", "--batch", "-2"), "--batch must be a positive integer"),
        (("--engine", "tgi"), "unknown --engine 'tgi'"),
        (("--emit", "onnx"), "invalid choice"),
        (("--context", "4096", "--engine", "transformers", "--kv-dtype", "fp8"), "--kv-dtype fp8 is not offered"),
        (("--context", "4096", "--kv-dtype", "int4"), "--kv-dtype must be one of"),
        (("--engine", "vllm", "--bits", "3"), "has no fast kernel for any configuration"),
    ],
)
def test_bad_deployment_flags_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = cli(capsys, "recommend", "--model", "llama-3.1-8b", "--min-ka", "0.4", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == "", err
