"""Predictions conditioned on the model's own unquantized scores (strata.baseline, advisor.condition)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from advisor_cli import cli

import advisor
from strata.baseline import BaselineError, load_baseline, parse_baseline

QWEN3_8B = {"arc_easy": 0.835, "boolq": 0.865, "hellaswag": 0.571, "mmlu": 0.747, "piqa": 0.764,
            "arc_challenge": 0.555, "winogrande": 0.68}  # fmt: skip  # arXiv:2505.02214v1 Table 2, FP16


def _write(tmp_path, tasks, name="b.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"tasks": {k: {"mean": v} for k, v in tasks.items()}}))
    return path


def test_the_published_baseline_is_the_default_and_is_named():
    pred = advisor.predict("qwen3-8b", bits=8, group_size=128, calib_samples=128)
    assert pred.baseline is not None and "arXiv:2505.02214v1" in pred.baseline.source
    assert set(pred.baseline.conditioned) == {"KA", "KR"} and not any(pred.baseline.law_only.values())
    none = advisor.predict("qwen3-8b", bits=8, group_size=128, calib_samples=128, published_baseline=False)
    assert none.baseline is None


def test_a_better_baseline_moves_the_prediction_up_by_about_its_own_difference(tmp_path):
    """The prediction is the baseline plus the law's drop: raise every baseline score and the quantized prediction
    rises too, and 8-bit stays near the baseline it was given."""
    low, high = _write(tmp_path, QWEN3_8B, "low.json"), _write(tmp_path, {k: v + 0.05 for k, v in QWEN3_8B.items()})
    a = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128, baseline=low)
    b = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128, baseline=high)
    for task in QWEN3_8B:
        assert 0.02 < b.tasks[task].mean - a.tasks[task].mean < 0.08, task
    eight = advisor.predict("qwen3-8b", bits=8, group_size=128, calib_samples=128, baseline=low)
    for task, acc in QWEN3_8B.items():  # 8-bit is near lossless in every published table
        assert abs(eight.tasks[task].mean - acc) < 0.03, task
        assert eight.tasks[task].lo < acc < eight.tasks[task].hi or abs(eight.tasks[task].mean - acc) < 0.01


def test_fewer_bits_never_predict_more_than_the_baseline_on_average(tmp_path):
    base = _write(tmp_path, QWEN3_8B)
    means = [advisor.predict("qwen3-8b", bits=b, group_size=128, calib_samples=128, baseline=base).tiers["KR"].mean
             for b in (3, 4, 8)]  # fmt: skip
    assert means == sorted(means)


def test_unknown_and_partial_baselines_are_said(tmp_path):
    base = _write(tmp_path, {"arc_easy": 0.8, "gsm8k_cot": 0.4})
    pred = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128, baseline=base)
    assert pred.baseline is not None and pred.baseline.conditioned == {"KA": ["arc_easy"]}
    assert "KR" in pred.baseline.not_conditioned
    assert set(pred.baseline.law_only["KA"]) == {"boolq", "hellaswag", "mmlu", "piqa"}
    assert any(u.startswith("gsm8k_cot: not a task of the profile") for u in pred.baseline.unused)


def test_bits_16_answers_tasks_from_the_baseline():
    pred = advisor.predict("qwen3-8b", bits=16, group_size=128, calib_samples=128)
    assert set(pred.tasks) == set(QWEN3_8B)
    assert pred.tasks["arc_easy"].mean == pytest.approx(0.835, abs=0.01)  # the published score, with item noise


def test_the_interval_carries_the_baseline_item_noise(tmp_path):
    few = tmp_path / "few.json"
    few.write_text(json.dumps({"tasks": {k: {"mean": v, "n": 30} for k, v in QWEN3_8B.items()}}))
    many = _write(tmp_path, QWEN3_8B)
    w = [advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128, baseline=p).tasks["mmlu"]
         for p in (few, many)]  # fmt: skip
    assert (w[0].hi - w[0].lo) > 1.5 * (w[1].hi - w[1].lo)  # 30 items vs 14042


def test_a_baseline_over_the_whole_task_carries_no_item_noise_a_subset_keeps_it():
    """The baseline's noise is that of an estimate of the whole task's score (finite-population factor): over all
    of a task's items the quantized model is scored on those same items, so no draw strays from the mean; from a
    quarter of them the spread is the Beta posterior's times sqrt(3/4)."""
    from strata.baseline import adj_from_z, tier_baseline_z

    whole = adj_from_z(tier_baseline_z({"t": (0.7, 1000, 0.25, 1000)}, 4000, "k")[0])
    part = adj_from_z(tier_baseline_z({"t": (0.7, 250, 0.25, 1000)}, 4000, "k")[0])
    unknown = adj_from_z(tier_baseline_z({"t": (0.7, 250, 0.25, None)}, 4000, "k")[0])
    assert float(np.ptp(whole)) < 1e-9  # the same value in every draw, up to rounding
    beta_sd = np.sqrt(0.7 * 0.3 / 250) / 0.75  # of the chance-adjusted accuracy
    assert abs(float(np.std(part)) / (beta_sd * np.sqrt(0.75)) - 1) < 0.08  # 4000 draws: sd's error ~1%, z's clip
    assert abs(float(np.std(unknown)) / beta_sd - 1) < 0.08  # a task of unknown size keeps all of it


def test_a_calibrate_evaluate_answer_is_a_baseline(tmp_path):
    answer = {"model": "m", "config": {"bits": None}, "tiers": {"KA": {"mean": 0.5}},
              "tasks": {"arc_easy": {"mean": 0.8, "lo": 0.78, "hi": 0.82, "level": 0.9, "n": 2376, "correct": 1901,
                                     "stderr": 0.008}}}  # fmt: skip
    assert parse_baseline(answer).tasks["arc_easy"].n == 2376


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"tasks": {}}', "field tasks"),
        ('{"tasks": {"arc_easy": {"mean": 80.1}}}', "field tasks.arc_easy.mean"),
        ('{"tasks": {"arc_easy": {"mean": 0.8, "n": -3}}}', "field tasks.arc_easy.n"),
        ('{"tasks": {"arc_easy": {"mean": 0.8, "n": 20.5}}}', "whole number"),
        ('{"tasks": {"arc_easy": {"mean": 0.8, "metric": "f1"}}}', "field tasks.arc_easy.metric"),
    ],
)
def test_bad_baseline_files_are_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(path)
    code, out, err = cli(capsys, "predict", "--model", "qwen3-8b", "--bits", "4", "--group-size", "128",
                         "--baseline", str(path))  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_answers_are_reproducible():
    a = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128)
    b = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128)
    np.testing.assert_allclose(a.tiers["KR"].mean, b.tiers["KR"].mean, rtol=1e-12)  # seeded draws


def test_a_base_model_never_borrows_its_instruct_siblings_scores():
    base = advisor.predict("llama-3.1-8b", bits=4, group_size=128, calib_samples=128)
    assert base.baseline is None  # only the -Instruct model's FP16 scores are published
    chat = advisor.predict("meta-llama/Llama-3.1-8B-Instruct", bits=4, group_size=128, calib_samples=128)
    assert chat.baseline is not None and "Llama-3.1-8B-Instruct" in chat.baseline.source


def test_a_tier_counts_each_task_once_on_the_baselines_metric():
    from strata.metric import law_task, tier_members

    laws = {"arc_challenge": "KR", "arc_challenge:acc_norm": "KR", "gsm8k:exact_match": "KR", "mmlu": "KA"}
    assert tier_members(laws, "KR") == ["arc_challenge", "gsm8k:exact_match"]  # acc where both were fitted
    assert tier_members(laws, "KR", prefer={"arc_challenge:acc_norm"}) == ["arc_challenge:acc_norm",
                                                                           "gsm8k:exact_match"]  # fmt: skip
    assert law_task("arc_challenge", "acc") == "arc_challenge"
    assert law_task("gsm8k", "exact_match,strict-match") == "gsm8k:exact_match"
    assert law_task("gsm8k:exact_match", "exact_match") == "gsm8k:exact_match"


def test_llama3_is_its_own_family_and_a_baseline_on_acc_norm_conditions_its_acc_norm_law(tmp_path):
    pred = advisor.predict("llama-3.1-8b-instruct", bits=4, group_size=128, calib_samples=128)
    assert pred.profile.name == "llama3"
    b = pred.baseline
    assert b is not None and "arXiv:2409.11055v6" in b.source  # the instruct model's own published scores
    assert set(b.conditioned["KR"]) == {"arc_challenge:acc_norm", "gsm8k:exact_match", "winogrande"}
    assert set(pred.tiers["KR"].tasks) == {"arc_challenge:acc_norm", "gsm8k:exact_match", "winogrande"}
    published = {"arc_challenge:acc_norm": 0.6143, "gsm8k:exact_match": 0.7233, "winogrande": 0.7522}  # W4 g128
    for task, measured in published.items():  # arXiv:2409.11055v6 Table 1, GPTQ W4 g128 (in the fit: in-sample)
        assert pred.tasks[task].lo < measured < pred.tasks[task].hi, task


def test_a_baseline_on_a_metric_the_profile_never_fitted_is_said_unused(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"tasks": {"arc_challenge": {"mean": 0.58, "metric": "acc_norm"},
                                          "winogrande": {"mean": 0.68}}}))  # fmt: skip
    pred = advisor.predict("qwen3-8b", bits=4, group_size=128, calib_samples=128, baseline=path)
    assert pred.baseline is not None and pred.baseline.conditioned["KR"] == ["winogrande"]
    assert any(u.startswith("arc_challenge:acc_norm: the profile fits arc_challenge on another metric")
               for u in pred.baseline.unused)  # fmt: skip


def test_the_drop_is_taken_within_one_laws_draws_so_the_models_level_cancels():
    """The 16-bit counterpart is the quantized law's own draws at the anchor less a point gap: at the anchor the
    drop is the same in every draw (the laws' level uncertainty, fitted apart, used to double every interval), and
    at 4 bits its spread is the law's uncertainty about B alone, far under the two laws' independent levels."""
    from advisor.condition import ANCHOR, Conditioning
    from strata.profile import law_draws, load_profile

    profile = load_profile("profiles/qwen3.json")
    base = parse_baseline({"tasks": {k: {"mean": v} for k, v in QWEN3_8B.items()}})
    c = Conditioning.of(profile, "Qwen/Qwen3-8B", 8.2e9, base, "test", "Qwen3")
    for tier in c.tiers:
        zq, zu, _ = c._laws(tier, *(np.array([v]) for v in ANCHOR))
        assert np.ptp(zq - zu) < 1e-9  # the same number in every draw, up to rounding
        zq, zu, _ = c._laws(tier, np.array([4.0]), np.array([128.0]), np.array([128.0]))
        one = np.array([1.0])
        z16 = np.log(-np.log(law_draws(profile.unquantized[tier], 8.2e9, one * 16, one, one * 2)))
        apart = np.hypot(np.std(zq), np.std(z16))  # the two laws' draws differenced as if independent
        assert np.std(zq - zu) < 0.8 * apart, (tier, np.std(zq - zu), apart)


def test_the_zoos_tasks_are_sized_by_the_profile_where_the_tier_map_does_not_know_them():
    """The shipped tier map does not hold the zoo's tasks; the strata-world profile's task laws say 640 items (the
    sweep's), so a baseline from `calibrate evaluate --limit 640` is known to cover the whole task."""
    from advisor.condition import Conditioning
    from strata.profile import load_profile

    profile = load_profile("profiles/strata-world.json")
    base = parse_baseline({"tasks": {k: {"mean": 0.8, "n": 640} for k in profile.tasks}})
    c = Conditioning.of(profile, "strata-zoo-148k", 1.55e5, base, "test", family="strata-world")
    assert c.whole == dict.fromkeys(profile.tasks, 640)
    draws = c.task_baseline("strata_world_km", 400)
    assert float(np.ptp(draws)) < 1e-9  # no item noise left: the quantized model is scored on these very items
