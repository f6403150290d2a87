"""Fidelity of calibrate.sequential's GPTQ against llm-compressor's GPTQModifier, where llmcompressor is installed.

Same model (strata-world-xs), calibration batch and configurations, with llm-compressor's conventions matched through
strata's configuration (see bench/gptq_fidelity.py): equal weights, or a reconstruction error within 1% of the
library's, for every block linear.
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llmcompressor")

from calibrate.gptq import QuantConfig

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gptq_fidelity.py"


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("gptq_fidelity", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("configs", "act_order"),
    [([QuantConfig(4, 32), QuantConfig(4, 32, sym=True)], False), ([QuantConfig(4, 32)], True)],
)
def test_gptq_matches_llm_compressor(fidelity, configs, act_order, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ids = fidelity.calibration_ids(fidelity.XS, 16, 32)
    rows = fidelity.compare(fidelity.XS, ids, configs, act_order=act_order)
    assert len(rows) == 14 * len(configs)  # 7 linears x 2 blocks per config
    for r in rows:
        assert r["equal"] > 0.99 or abs(r["ours"] / r["library"] - 1) <= 0.01, r
