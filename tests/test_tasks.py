"""Real lm-eval tasks, offline: the default tier map against lm-eval's task index, and lm-eval's own shipped configs
(prompts, filters, metrics) of every task kind run end to end on tiny fixtures (tests/data/hub, the Hub datasets'
exact fields) through the local dataset mirror (calibrate datasets pack, --datasets / $STRATA_DATASETS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from typer.testing import CliRunner

from calibrate.cli import app
from calibrate.datasets import ENV, Mirror
from calibrate.evaluate import leaf_configs, task_index
from strata.tiermap import TierMapError, load_tier_map

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "tests" / "data" / "hub"
XS = ROOT / "examples" / "models" / "strata-world-xs"

# The three kinds, each with its published protocol where the fixtures allow it (25 ARC training items: 25-shot).
MIXED = """\
tasks:
  triviaqa: {tier: KM, chance: 0.0, metric: exact_match, filter: remove_whitespace}
  nq_open: {tier: KM, chance: 0.0, metric: exact_match, filter: remove_whitespace}
  mmlu_few: {tier: KA, chance: 0.25, lm_eval_task: mmlu, num_fewshot: 5,
             subtasks: [mmlu_abstract_algebra, mmlu_anatomy, mmlu_astronomy]}
  arc_easy: {tier: KA, chance: 0.25}
  hellaswag: {tier: KA, chance: 0.25, metric: acc_norm}
  gsm8k: {tier: KR, chance: 0.0, metric: exact_match, filter: strict-match, num_fewshot: 5}
  arc_challenge: {tier: KR, chance: 0.25, metric: acc_norm, num_fewshot: 25}
  winogrande: {tier: KR, chance: 0.5}
"""
# task -> (kind, metric, filter, shots, items in the fixture's evaluation split)
EXPECT = {
    "triviaqa": ("generate_until", "exact_match", "remove_whitespace", 0, 5),
    "nq_open": ("generate_until", "exact_match", "remove_whitespace", 0, 5),
    "mmlu_few": ("group", "acc", "none", 5, 9),
    "arc_easy": ("multiple_choice", "acc", "none", 0, 4),
    "hellaswag": ("multiple_choice", "acc_norm", "none", 0, 5),
    "gsm8k": ("generate_until", "exact_match", "strict-match", 5, 3),
    "arc_challenge": ("multiple_choice", "acc_norm", "none", 25, 4),
    "winogrande": ("multiple_choice", "acc", "none", 0, 5),
}


@pytest.fixture(scope="module")
def index() -> Any:
    return task_index()  # lm-eval's own index (cached: the evaluations below reuse it)


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def mixed_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("map") / "mixed.yaml"
    path.write_text(MIXED)
    return path


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, mixed_map: Path, index: Any) -> Path:
    out = tmp_path_factory.mktemp("mirror")
    res = _run(["datasets", "pack", "--tier-map", str(mixed_map), "--out", str(out), "--from", str(HUB)])
    assert res.exit_code == 0, res.output
    return out


# --- the default tier map ---------------------------------------------------------------------------------------


def test_default_tier_map_names_only_real_tasks_with_metrics_and_filters_they_report(index: Any) -> None:
    tmap = load_tier_map()
    for key, spec in tmap.tasks.items():
        name = spec.lm_eval_task or key
        assert name in index.all_tasks, key
        for leaf, cfg in leaf_configs(index, name).items():  # the configs as shipped, no data needed
            assert spec.metric in [m["metric"] for m in cfg["metric_list"]], (key, leaf)
            assert spec.filter in ([f["name"] for f in cfg.get("filter_list") or []] or ["none"]), (key, leaf)
    km, kr = tmap.tasks_of("KM"), tmap.tasks_of("KR")
    assert len(km) >= 3 and {"triviaqa", "nq_open", "webqs"} <= set(km)
    assert "gsm8k" in kr and tmap.tasks["strategyqa"].lm_eval_task == "bigbench_strategyqa_multiple_choice"
    assert len(leaf_configs(index, "mmlu")) == 57  # a group: n and correct are summed over its 57 subtasks
    # published protocols
    shots = {k: s.num_fewshot for k, s in tmap.tasks.items()}
    assert (shots["mmlu"], shots["gsm8k"], shots["arc_challenge"]) == (5, 5, 25)
    assert tmap.tasks["gsm8k"].row_metric == "exact_match,strict-match" and tmap.tasks["arc_easy"].row_metric == "acc"
    # generation scored by exact match has no guessing floor; choice tasks keep theirs
    assert all(tmap.tasks[k].chance == 0.0 for k in ("triviaqa", "nq_open", "webqs", "gsm8k"))
    assert tmap.tasks["winogrande"].chance == 0.5 and tmap.tasks["mmlu"].items == 14042


def test_published_names_still_resolve() -> None:
    tmap = load_tier_map()
    assert tmap.resolve("strategyqa") == "strategyqa"  # the published tables' name
    assert tmap.resolve("bigbench_strategyqa_multiple_choice") == "strategyqa"
    assert tmap.resolve("nq") == "nq_open"


def test_tier_map_checks_the_new_fields(tmp_path: Path) -> None:
    bad = {
        "metric: f1": "metric",
        "num_fewshot: -1": "num_fewshot",
        "filter: 'a b'": "filter",
        "lm_eval_task: mmlu, subtasks: [mmlu_anatomy]": "own key",
    }
    for field, expect in bad.items():
        path = tmp_path / "m.yaml"
        key = "mmlu" if "subtasks" in field else "t"
        path.write_text(f"tasks:\n  {key}: {{tier: KA, chance: 0.25, {field}}}\n")
        with pytest.raises(TierMapError, match=expect):
            load_tier_map(path)


# --- the mirror -------------------------------------------------------------------------------------------------


def test_pack_writes_every_split_the_configs_name_with_a_manifest(mirror: Path) -> None:
    manifest = json.loads((mirror / "manifest.json").read_text())
    got = {(e["path"], e["name"]): e for e in manifest["datasets"]}
    assert len(got) == 10  # 3 mmlu subjects, 2 ARC configs, 5 others
    gsm = got[("openai/gsm8k", "main")]
    assert set(gsm["splits"]) == {"train", "test"} and gsm["tasks"] == ["gsm8k"]
    for e in got.values():
        for split, s in e["splits"].items():
            src = HUB / e["path"] / (e["name"] or "default") / f"{split}.jsonl"
            assert s["rows"] == len(src.read_text().splitlines()) and (mirror / s["file"]).is_file()


def test_pack_reads_save_to_disk_and_parquet_layouts_the_same(tmp_path: Path, mirror: Path) -> None:
    import datasets

    fake = tmp_path / "cache"  # the layouts a machine with the data has: save_to_disk folders, parquet files
    dd = Mirror.open(mirror).loader("allenai/winogrande", "winogrande_xl")()
    dd.save_to_disk(str(fake / "allenai" / "winogrande" / "winogrande_xl"))
    gsm = Mirror.open(mirror).loader("openai/gsm8k", "main")()
    for split, ds in gsm.items():
        (fake / "openai" / "gsm8k" / "main").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(fake / "openai" / "gsm8k" / "main" / f"{split}.parquet"))
    tier_map = tmp_path / "m.yaml"
    tier_map.write_text("tasks:\n  winogrande: {tier: KR, chance: 0.5}\n  gsm8k: {tier: KR, chance: 0.0}\n")
    out = tmp_path / "mirror"
    res = _run(["datasets", "pack", "--tier-map", str(tier_map), "--out", str(out), "--from", str(fake)])
    assert res.exit_code == 0, res.output
    again = Mirror.open(out)
    assert again.loader("allenai/winogrande", "winogrande_xl")()["validation"].to_list() == dd["validation"].to_list()
    assert again.loader("openai/gsm8k", "main")()["train"].to_list() == gsm["train"].to_list()
    assert isinstance(dd, datasets.DatasetDict)


# --- lm-eval's real configs, every kind, end to end ---------------------------------------------------------------


def test_evaluate_a_tier_map_mixing_the_three_kinds(mirror: Path, mixed_map: Path) -> None:
    res = _run([
        "evaluate", "--model", str(XS), "--tier-map", str(mixed_map), "--datasets", str(mirror),
        "--max-length", "512", "--json",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["tiers"]) == {"KM", "KA", "KR"} and out["evaluation"]["datasets"] == str(mirror.resolve())
    for key, (kind, metric, filt, shots, items) in EXPECT.items():
        t = out["tasks"][key]
        assert (t["kind"], t["metric"], t["filter"], t["n_shot"], t["n"]) == (kind, metric, filt, shots, items), key
        assert 0 <= t["correct"] <= t["n"]
        assert t["correct"] == pytest.approx(t["mean"] * t["n"], abs=0.5)
    assert out["tasks"]["mmlu_few"]["subtasks"] == 3
    assert out["tiers"]["KM"]["tasks"] == ["triviaqa", "nq_open"] and out["tiers"]["KM"]["n"] == 10


# --- bad input: one line naming the task and the fix, exit 2 -------------------------------------------------------


def _bad(args: list[str], *expect: str) -> None:
    res = _run(args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for text in expect:
        assert text in res.stderr, res.stderr


def _map(tmp_path: Path, line: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(f"tasks:\n  {line}\n")
    return str(path)


def test_unknown_task_name_suggests_lm_eval_names(tmp_path: Path, index: Any) -> None:
    args = ["evaluate", "--model", str(XS), "--tier-map", _map(tmp_path, "strategyqa: {tier: KR, chance: 0.5}")]
    _bad(args, "task strategyqa", "bigbench_strategyqa_multiple_choice", "lm_eval_task")
    args = ["evaluate", "--model", str(XS), "--tier-map", _map(tmp_path, "hellaswagg: {tier: KA, chance: 0.25}")]
    _bad(args, "hellaswagg", "did you mean hellaswag")


def test_metric_the_task_does_not_report(tmp_path: Path, mirror: Path) -> None:
    m = _map(tmp_path, "winogrande: {tier: KR, chance: 0.5, metric: acc_norm}")
    _bad(
        ["evaluate", "--model", str(XS), "--tier-map", m, "--datasets", str(mirror)],
        "task winogrande",
        "acc_norm",
        "metric:",
    )


def test_filter_the_task_does_not_have(tmp_path: Path, mirror: Path) -> None:
    m = _map(tmp_path, "gsm8k: {tier: KR, chance: 0.0, metric: exact_match, filter: strict}")
    _bad(
        ["evaluate", "--model", str(XS), "--tier-map", m, "--datasets", str(mirror)],
        "task gsm8k",
        "strict-match",
        "filter:",
    )


def test_dataset_missing_from_the_mirror(tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(mirror))  # the node's setting
    m = _map(tmp_path, "piqa: {tier: KA, chance: 0.5}")
    _bad(["evaluate", "--model", str(XS), "--tier-map", m], "task piqa", "not in the mirror", "calibrate datasets pack")
    _bad(["datasets", "pack", "--tier-map", m, "--out", str(tmp_path / "o"), "--from", str(HUB)], "task piqa", "piqa")
    assert not (tmp_path / "o" / "manifest.json").exists()  # nothing half-written


def test_sweep_rows_record_the_metric_filter_and_shots(tmp_path: Path) -> None:
    from calibrate.spec import parse_spec
    from calibrate.store import Store
    from calibrate.sweep import run_sweep
    from tests.tiny_sweep import tiny_spec

    spec = tiny_spec(tmp_path / "s.sqlite", method="rtn", bits=[4], calibration=None)
    tasks = ["strata_world_km", "strata_world_km_gen"]
    spec["evaluation"] = {"tier_map": str(XS / "tier_map_all.yaml"), "tasks": tasks, "limit": 8}
    run_sweep(parse_spec(spec))
    with Store.open(tmp_path / "s.sqlite") as store:
        rows = list(store.rows())
    got = {(r.task, r.metric, r.n_shot) for r in rows}
    assert got == {("strata_world_km", "acc", 0), ("strata_world_km_gen", "exact_match,first-word", 0)}
    assert all(r.n_items == 8 and r.extra["task"]["kind"] in ("multiple_choice", "generate_until") for r in rows)
    # the same task measured with another metric is another row, never the same one
    a = next(r for r in rows if r.task == "strata_world_km")
    assert a.model_copy(update={"metric": "acc_norm"}).key() != a.key() != a.model_copy(update={"n_shot": 5}).key()
