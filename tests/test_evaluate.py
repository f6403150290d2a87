"""Tiered evaluation through lm-eval on the shipped synthetic checkpoints, and the CLI's answers to bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from typer.testing import CliRunner

from calibrate.cli import app
from calibrate.evaluate import Evaluator
from calibrate.rtn import apply_rtn, restore

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "examples" / "models").glob("*") if (p / "config.json").is_file())
WORLD = [p for p in SHIPPED if p.name.startswith("strata-world-")]  # the first world's models (160 items per task)
SMALLEST = (  # by weight size, not name: "strata-world-s" sorts before "strata-world-xs"
    min(WORLD, key=lambda p: (p / "model.safetensors").stat().st_size)
    if WORLD
    else ROOT / "examples" / "models" / "missing"
)


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(SMALLEST)


@pytest.fixture(scope="module")
def full(evaluator: Evaluator) -> dict:
    return evaluator.evaluate()


def test_shipped_checkpoints_exist_and_are_small() -> None:
    assert len(SHIPPED) >= 1
    for path in SHIPPED:
        assert (path / "model.safetensors").stat().st_size <= 5 * 2**20
        assert (path / "tier_map.yaml").is_file()


def test_unquantized_accuracy_is_well_above_chance_on_every_tier(full: dict) -> None:
    assert set(full["tiers"]) == {"KM", "KA", "KR"}
    for name, task in full["tasks"].items():
        assert task["n"] == 160 and task["correct"] == round(task["mean"] * task["n"])
        assert task["mean"] > 0.5, name  # chance is 0.25
    for tier, t in full["tiers"].items():
        assert t["lo"] > 0.3, tier  # chance-adjusted: 0 is chance, 1 is perfect


def test_rtn_2bit_drops_accuracy_and_restore_brings_it_back(evaluator: Evaluator, full: dict) -> None:
    def rtn_accuracy(skip: tuple[str, ...]) -> dict[str, float]:
        originals = apply_rtn(evaluator.model, bits=2, group_size=-1, skip=skip)
        try:
            return {k: t["mean"] for k, t in evaluator.evaluate()["tasks"].items()}
        finally:
            restore(evaluator.model, originals)

    base = {k: t["mean"] for k, t in full["tasks"].items()}
    linear = rtn_accuracy(skip=("lm_head",))  # the block's linear layers only: the standard weight-only PTQ scope
    assert all(linear[k] < base[k] for k in base), (base, linear)  # every tier loses items
    assert sum(base.values()) - sum(linear.values()) > 0.05
    everything = rtn_accuracy(skip=())  # also the tied head / embedding table, where the facts live
    assert all(base[k] - everything[k] > 0.03 for k in base), (base, everything)
    assert base["strata_world_kr"] - everything["strata_world_kr"] > 0.1  # reasoning is the most precision-critical
    again = evaluator.evaluate()  # same process, same loaded model, weights restored: no stale cached answers
    for name, task in full["tasks"].items():  # counts exactly; the means they give within rounding
        assert (again["tasks"][name]["correct"], again["tasks"][name]["n"]) == (task["correct"], task["n"])
        assert again["tasks"][name]["mean"] == pytest.approx(task["mean"], abs=1e-12)


def test_item_subsets_are_seeded_random_and_recorded(evaluator: Evaluator) -> None:
    a, b = evaluator.subset(30, seed=1), evaluator.subset(30, seed=1)
    assert a == b and a is not None
    c = evaluator.subset(30, seed=2)
    assert c is not None and any(a[t] != c[t] for t in a)
    assert all(idx != list(range(30)) for idx in a.values())  # not lm-eval's "first N items"
    res = evaluator.evaluate(limit=30, seed=1)
    assert all(t["n"] == 30 for t in res["tasks"].values())
    assert res["evaluation"]["limit"] == 30 and res["evaluation"]["seed"] == 1


def test_item_scores_are_lm_evals_own_samples_and_add_up_to_the_task_means(evaluator: Evaluator, full: dict) -> None:
    items = evaluator.item_scores()
    assert set(items) == set(full["tasks"])
    for key, rows in items.items():
        assert len(rows) == full["tasks"][key]["n"]
        assert sum(score for _, score in rows) == full["tasks"][key]["correct"]  # 0/1 scores: a count, exact
        assert all("query" in doc and "choices" in doc for doc, _ in rows)


def test_probe_rows_keep_uniform_scalar_extras_and_drop_the_rest(tmp_path: Path) -> None:
    from calibrate.evaluate import read_probe_rows

    rows = [
        {"query": "a", "choices": ["x", "y"], "gold": 0, "repeats": 4, "mixed": 1, "facts": ["f"], "flag": True},
        {"query": "b", "choices": ["x", "y"], "gold": 1, "repeats": 8, "mixed": "one"},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_probe_rows(path)
    assert [r["repeats"] for r in got] == [4, 8]
    assert all(set(r) == {"query", "choices", "gold", "repeats"} for r in got)


def test_cli_evaluates_a_shipped_checkpoint_with_no_other_flag() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "calibrate.cli", "evaluate", "--model", str(SMALLEST), "--limit", "40", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(res["tiers"]) == {"KM", "KA", "KR"}
    assert {t["n"] for t in res["tasks"].values()} == {40}


# --- bad input: one clear line on stderr, exit status 2 ------------------------------------------------------


def _bad(args: list[str], expect: str) -> None:
    result = CliRunner().invoke(app, ["evaluate", *args])
    assert result.exit_code == 2, result.output
    assert expect in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_model_path(tmp_path: Path) -> None:
    _bad(["--model", str(tmp_path / "nope")], "does not exist")


def test_model_dir_without_config(tmp_path: Path) -> None:
    _bad(["--model", str(tmp_path)], "no config.json")


def test_tier_map_with_unknown_tier(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("tasks:\n  strata_world_km: {tier: KX, chance: 0.25}\n")
    _bad(["--model", str(SMALLEST), "--tier-map", str(bad)], "tier")


def _copy_checkpoint(tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(SMALLEST, dst)
    return dst


def test_tier_map_with_unknown_task(tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tmp_path)
    text = (ckpt / "tier_map.yaml").read_text().replace("strata_world_kr:", "no_such_task_xyz:")
    (ckpt / "tier_map.yaml").write_text(text)
    _bad(["--model", str(ckpt)], "no_such_task_xyz")


def test_task_file_with_malformed_row(tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tmp_path)
    data = ckpt / "tasks" / "strata_world_ka.jsonl"
    rows = data.read_text().splitlines()
    rows[3] = json.dumps({"query": "x", "choices": ["a", "b"], "gold": 5})
    data.write_text("\n".join(rows) + "\n")
    _bad(["--model", str(ckpt)], "strata_world_ka.jsonl:4")


def test_limit_larger_than_the_task() -> None:
    _bad(["--model", str(SMALLEST), "--limit", "100000"], "larger than task")


# --- the other task kinds on the synthetic world: generation, and an lm-eval group ---------------------------------


def test_generation_probe_produces_the_names_and_quantization_costs_it() -> None:
    ev = Evaluator(SMALLEST, SMALLEST / "tier_map_all.yaml", tasks=["strata_world_km_gen"])
    before = ev.evaluate()["tasks"]["strata_world_km_gen"]
    assert (before["kind"], before["metric"], before["filter"], before["n"]) == (
        "generate_until", "exact_match", "first-word", 160,
    )  # fmt: skip
    assert before["mean"] > 0.5  # the trained facts, produced greedily, not picked from four
    originals = apply_rtn(ev.model, bits=2, group_size=-1)
    try:
        after = ev.evaluate()["tasks"]["strata_world_km_gen"]
    finally:
        restore(ev.model, originals)
    assert after["correct"] < before["correct"]


def test_a_group_sums_its_subtasks(tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tmp_path)
    (ckpt / "tasks" / "strata_world_all.yaml").write_text(
        "group: strata_world_all\ntask: [strata_world_km, strata_world_ka, strata_world_kr]\n"
        "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 1.0\n"
    )
    (ckpt / "groups.yaml").write_text(
        "include_path: tasks\ntasks:\n  world_all: {tier: KA, chance: 0.25, lm_eval_task: strata_world_all}\n"
    )
    res = Evaluator(ckpt, ckpt / "groups.yaml").evaluate(limit=10)
    t = res["tasks"]["world_all"]
    assert (t["kind"], t["subtasks"], t["n"], t["lm_eval_aggregation"]) == ("group", 3, 30, "micro")
    assert t["mean"] == pytest.approx(t["correct"] / 30, abs=1e-12)
    assert t["lm_eval_mean"] == pytest.approx(t["mean"], abs=1e-9)  # lm-eval's size-weighted mean: the same
