"""Predictions held to rows the fit never saw (fit.heldout), as `fit validate --heldout` scores them."""

from __future__ import annotations

import pytest

from fit.heldout import _fp16, _gptq_rows, breakdown_markdown, leave_one_family_out, leave_one_model_out, markdown
from fit.pipeline import read_rows


@pytest.fixture(scope="module")
def rows():
    return read_rows()


def _by(scores, split_part, method):
    return next(s for s in scores if split_part in s.split and s.method == method)


def test_leaving_a_qwen3_model_out_the_baseline_makes_the_intervals_honest(rows):
    scores = leave_one_model_out(rows, ["qwen3"], progress=lambda _m: None)
    base, alone = _by(scores, "B >= 3", "law + baseline"), _by(scores, "B >= 3", "law alone")
    assert base.n == alone.n > 50
    assert base.coverage is not None and base.coverage >= 0.85  # 90% intervals, on models the fit never saw
    assert base.mae_points < alone.mae_points
    two = _by(scores, "B = 2", "law + baseline")
    copy = _by(scores, "B = 2", "copy FP16")
    assert two.mae_points < copy.mae_points / 2  # the collapse model, not "no drop", at 2 bits
    assert "| leave one model out" in markdown(scores)


def test_a_family_never_fitted_is_covered_with_its_baseline(rows):
    scores = leave_one_family_out(rows, ["qwen3", "llama", "llama3"], "ols", progress=lambda _m: None)
    base = _by(scores, "B >= 3", "law + baseline")
    # OLS carries no between-family spread (the paper's procedure); with the baseline it still covers the truths.
    # Not too wide either: 0.95 measured, where differencing the two laws' independent draws gave 0.99 (the drop
    # then carried both laws' uncertainty about the models' level, advisor.condition.Conditioning._laws)
    assert base.coverage is not None and 0.85 <= base.coverage <= 0.975 and base.far <= 0.01 * base.n
    assert base.n > 280  # every family's rows, Llama-3's and the chat models' acc_norm / exact_match rows among them
    # the same rows by family and (B, G): where the intervals are wide. 4 bits G=128 is where every family has rows
    # and no collapse is in sight: intervals there are a few points wide, not the 30-40 of a 3-bit collapse risk
    cells = base.by_config
    assert sum(c.n for c in cells) == base.n and sum(c.far for c in cells) == base.far
    at4 = [c for c in cells if c.bits == 4 and c.group_size == 128]
    assert {c.family for c in at4} >= {"Qwen3", "Llama-2", "LLaMA-1", "Llama-3"}
    assert all(c.width_points < 10 for c in at4)
    table = breakdown_markdown(scores)
    assert "| leave one family out (ols), B >= 3 | Qwen3 | 4 | 128 |" in table and "per-channel" in table


def test_rows_on_other_metrics_are_held_out_under_their_laws_name(rows):
    held = _gptq_rows(rows, {"meta-llama/Llama-3.1-8B-Instruct"})
    assert {r.task for r in held} == {"arc_challenge:acc_norm", "hellaswag:acc_norm", "gsm8k:exact_match", "mmlu",
                                      "winogrande"}  # fmt: skip
    fp16 = _fp16(rows)
    assert all((r.source, r.model, r.stage, r.task) in fp16 for r in held)  # each against its own metric's FP16
