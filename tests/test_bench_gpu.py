"""bench/gpu.sh in its tiny CPU mode: the script a GPU node runs, end to end, writing its ratios to the output folder.

llm-compressor and GPTQModel are not in the test environment: their comparisons must be recorded as skipped with
the reason (never as a number); the evaluation-throughput ratio is measured.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_sh_tiny_writes_every_ratio_or_why_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), str(out), "--tiny"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", "python")},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "ratios.json").read_text())
    ratios = summary["ratios"]
    assert set(ratios) == {"gptq_stage_llmcompressor_over_ours", "sweep_naive_over_ours", "eval_time_over_forward"}
    for name, e in ratios.items():
        assert ("value" in e) != ("skipped" in e or "failed" in e), name  # a number, or why there is none
        assert "failed" not in e, (name, e)
    ev = ratios["eval_time_over_forward"]
    assert ev["value"] > 0 and ev["line"] in (out / "eval_throughput.log").read_text()
    # the GPTQ stage ran (ours) even where the library to compare with is absent
    assert "ours, one quantize_model call for 4 configurations" in (out / "gptq_speed.log").read_text()
    assert "shape tiny" in summary["machine"]
