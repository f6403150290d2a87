"""`calibrate verify`: an advisor answer quantized, evaluated and held against its prediction and targets, end to end
on the shipped xs model, with the sweep's store reused; and every bad input as one line, exit 2.

The answer for the xs model is built by the advisor's own answer schema (``advisor.schema.Recommendation``), not
by ``advisor.recommend``: no shipped profile is fitted on the synthetic world (the qwen3 profile that the xs model's
Qwen3 architecture falls to predicts arc_challenge and winogrande near 0 and finds nothing: that real answer is the
"no recommendation" case below). The configuration is W2 per-channel at Cb=4, the one where the xs model loses
items on some tier, so that a target can be set above what it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from close import assert_close
from tiny_sweep import XS, tiny_spec

from strata.answer import Z90, measured_tier
from strata.verify import EXIT_NOT_MET, AnswerTier, tier_check

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
CONFIG = {"bits": 2, "group_size": -1, "calib_samples": 4}
TIERS = ("KM", "KA", "KR")

# calibrate's CLI in a fresh process; with no_quantize, any GPTQ solve raises (so a run that exits 0 reused the store)
_CLI = (
    "import runpy, sys\n"
    "if {no_quantize}:\n"
    "    import calibrate.sequential as s\n"
    "    def boom(*a, **k):\n"
    "        raise RuntimeError('quantized although the store holds this configuration')\n"
    "    s.quantize_model = boom\n"
    "sys.argv = ['calibrate', *{args!r}]\n"
    "runpy.run_module('calibrate.cli', run_name='__main__')\n"
)


def verify(*args: str, no_quantize: bool = False) -> subprocess.CompletedProcess[str]:
    code = _CLI.format(no_quantize=no_quantize, args=["verify", *args])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=ENV)


def answer(path: Path, targets: dict[str, float], tasks: dict[str, list[str]] | None = None, **config: Any) -> Path:
    """A recommendation for the xs model, validated by the advisor's schema: predicted median 0.9 in [0.8, 1.0]."""
    from advisor.schema import Recommendation

    tasks = tasks or {t: [f"strata_world_{t.lower()}"] for t in TIERS}
    tiers = {
        t: {"mean": 0.88, "median": 0.9, "lo": 0.8, "hi": 1.0, "tasks": tasks[t], "target": targets.get(t)}
        for t in TIERS
    }
    cfg = {"method": "GPTQ", **CONFIG, "sym": False, "act_order": False, **config}
    rec = Recommendation.model_validate(
        {
            "model": {"name": "strata-world-xs", "family": "Qwen3", "params_b": 1.14624e-4, "hidden_size": 64},
            "profile": {"name": "hand-made", "path": "none.json", "engine": "nuts"},
            "scale": "adjusted", "targets": targets, "memory_budget_gb": None, "confidence": 0.9, "found": True,
            "recommendation": {"config": cfg, "memory_gb": 1e-4, "compression": 3.0, "tiers": tiers},
            "alternatives": [], "bf16_gb": 2e-4, "searched": 1,
        }
    )  # fmt: skip
    path.write_text(rec.model_dump_json(indent=2))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A sweep of the one configuration (seed 0) into a store, and its tier values computed here from the rows."""
    from calibrate.spec import parse_spec
    from calibrate.store import Store
    from calibrate.sweep import run_sweep

    tmp = tmp_path_factory.mktemp("verify")
    data = tiny_spec(tmp / "s.sqlite", bits=[2], group_sizes=[-1], calib_samples=[4], evaluation={"limit": 40})
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    run_sweep(parse_spec(data))
    with Store.open(tmp / "s.sqlite") as store:
        rows = [r for r in store.rows(method="GPTQ")]
    tiers = {}
    for t in TIERS:
        (r,) = [r for r in rows if r.tier == t]
        assert r.correct is not None and r.n_items is not None and r.chance is not None
        acc = r.correct / r.n_items
        tiers[t] = measured_tier([acc], [(acc * (1 - acc) / (r.n_items - 1)) ** 0.5], [r.chance])
    return {"tmp": tmp, "spec": str(spec_path), "tiers": tiers}


def _common(world: dict[str, Any]) -> list[str]:
    return ["--model", str(XS), "--spec", world["spec"], "-q"]


# --- end to end ---------------------------------------------------------------------------------------------


def test_an_answer_whose_targets_hold_exits_0_from_the_sweeps_stored_measurement(world: dict[str, Any]) -> None:
    targets = {t: max(0.0, m - 0.05) for t, (m, _se) in world["tiers"].items()}
    path = answer(world["tmp"] / "pass.json", targets)
    proc = verify(str(path), *_common(world), "--json", no_quantize=True)  # the sweep measured it: nothing to run
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runs"] == [{"seed": 0, "reused": True}] and report["passed"] is True
    assert report["config"] == {"method": "GPTQ", **CONFIG, "sym": False, "act_order": False}
    assert report["calibration"] == "files:strata-world.txt" and report["seqlen"] == 16
    for t, (mean, se) in world["tiers"].items():
        got = report["tiers"][t]
        assert got["tasks"] == [f"strata_world_{t.lower()}"]
        assert_close([got["measured"]["mean"], got["stderr"]], [mean, se], rel=1e-9, abs_=1e-12)
        assert_close(got["target"], targets[t], rel=1e-12, abs_=1e-12)
        assert got["passes"] is True and got["spread"] is None
        assert_close([got["predicted"]["median"], got["predicted"]["lo"]], [0.9, 0.8], rel=1e-12, abs_=0)
        assert got["inside"] is (0.8 <= mean <= 1.0)


def test_a_target_above_what_the_model_measures_exits_3_and_says_which(world: dict[str, Any]) -> None:
    low = min(TIERS, key=lambda t: world["tiers"][t][0])
    mean = world["tiers"][low][0]
    assert mean <= 0.95, f"W2 per-channel costs the xs model nothing on any tier ({world['tiers']}): pick another"
    path = answer(world["tmp"] / "fail.json", {low: mean + 0.05})
    proc = verify(str(path), *_common(world), no_quantize=True)
    assert proc.returncode == EXIT_NOT_MET == 3, proc.stderr
    assert f"FAIL: {low} {mean:.3f} < {mean + 0.05:.3f}" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith(f"│ {low} "))
    assert "FAIL" in row and "0.900 [0.800, 1.000]" in row


def test_two_seeds_report_the_spread_and_a_second_run_reuses_both(world: dict[str, Any]) -> None:
    path = answer(world["tmp"] / "seeds.json", {})
    first = verify(str(path), *_common(world), "--seeds", "2", "--json")
    assert first.returncode == 0, first.stderr  # no targets: nothing can fail
    report = json.loads(first.stdout)
    assert report["runs"] == [{"seed": 0, "reused": True}, {"seed": 1, "reused": False}]  # seed 1 quantized now
    for t, tier in report["tiers"].items():
        s = tier["spread"]
        assert len(s["values"]) == 2 and s["values"][0] == pytest.approx(world["tiers"][t][0], abs=1e-12)
        assert_close(sum(s["values"]) / 2, tier["measured"]["mean"], rel=1e-9, abs_=1e-12)
        assert_close(s["range"], abs(s["values"][0] - s["values"][1]), rel=1e-9, abs_=1e-12)
        assert_close(s["sd"], s["range"] / 2**0.5, rel=1e-9, abs_=1e-12)  # two values: sd = |a - b| / sqrt(2)
        assert s["interval_wider"] is (2 * Z90 * s["sd"] < 0.2)
    human = verify(str(path), *_common(world), "--seeds", "2", no_quantize=True)  # both seeds stored now
    assert human.returncode == 0, human.stderr
    assert "seed(s) 0 (stored), 1 (stored)" in human.stdout and "seed range" in human.stdout
    assert "no targets" in human.stdout


def test_a_configuration_file_with_relative_targets_is_measured_against_the_unquantized_model(
    world: dict[str, Any],
) -> None:
    cfg = world["tmp"] / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(XS), **CONFIG, "targets": {"KM": 0.5}, "scale": "relative"}))
    proc = verify(str(cfg), "--spec", world["spec"], "-q", "--json", no_quantize=True)  # the sweep stored the ref
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["input"] == "configuration" and report["config"]["sym"] is False  # the protocol's, none given
    km = report["tiers"]["KM"]
    assert km["predicted"] is None and km["inside"] is None
    assert_close(km["target"], 0.5 * report["unquantized"]["KM"]["mean"], rel=1e-12, abs_=1e-12)
    assert report["unquantized"]["KM"]["mean"] > 0.5  # the xs model knows its world unquantized


def test_a_prediction_is_verified_too_and_a_measurement_on_other_calibration_text_is_not_reused(
    world: dict[str, Any], tmp_path: Path
) -> None:
    from advisor.schema import Prediction

    rec = json.loads(answer(tmp_path / "a.json", {}).read_text())["recommendation"]
    pred = Prediction.model_validate(
        {"model": {"name": "strata-world-xs", "family": "Qwen3", "params_b": 1.14624e-4, "hidden_size": 64},
         "profile": {"name": "hand-made", "path": "none.json", "engine": "nuts"}, "config": rec["config"],
         "memory_gb": 1e-4, "tiers": rec["tiers"], "tasks": {}}
    )  # fmt: skip
    path = tmp_path / "p.json"
    path.write_text(pred.model_dump_json())
    proc = verify(str(path), *_common(world), "--json", no_quantize=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["input"] == "prediction" and report["runs"] == [{"seed": 0, "reused": True}]
    assert all(t["target"] is None and t["inside"] is not None for t in report["tiers"].values())
    # the same protocol on another calibration text is another measurement: it is quantized, not read back
    other = tmp_path / "other.txt"
    other.write_text((XS.parents[1] / "calib" / "strata-world.txt").read_text())
    again = verify(str(path), *_common(world), "--calib-file", str(other), no_quantize=True)
    assert again.returncode == 1 and "quantized although the store holds" in again.stderr, again.stderr


# --- bad input: one line on stderr, exit 2, no traceback ---------------------------------------------------------


def _no_recommendation(tmp: Path) -> Path:
    """What `advisor recommend` prints with exit 3, from the advisor's API: no profile reaches KR 0.3 for xs."""
    from advisor import api

    rec = api.recommend(str(XS), min_kr=0.3, group_sizes=(32, -1), calib_samples=(4, 32))
    assert not rec.found and rec.recommendation is None
    path = tmp / "none.json"
    path.write_text(rec.model_dump_json())
    return path


def _catalog_answer(tmp: Path) -> Path:
    from advisor import api

    path = tmp / "qwen3-8b.json"
    path.write_text(api.recommend("qwen3-8b", min_ka=0.5).model_dump_json())
    return path


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


BAD: list[tuple[str, Any, list[str], str]] = [
    ("missing file", lambda t: t / "nope.json", [], "answer file {tmp}/nope.json does not exist"),
    ("bad JSON", lambda t: _write(t, "b.json", '{"kind": '), [], "b.json: not valid JSON (Expecting value at line 1"),
    ("not an answer", lambda t: XS / "config.json", [], "field 'architectures': unknown"),
    ("a list", lambda t: _write(t, "l.json", "[1, 2]"), [], "a list, not a JSON object"),
    ("a frontier", lambda t: _write(t, "f.json", '{"kind": "frontier"}'), [], "field 'kind' is 'frontier'"),
    ("no recommendation", _no_recommendation, [], "field 'recommendation' is null"),
    ("catalog id", _catalog_answer, [], "the answer's model qwen3-8b is not a local model folder"),
    ("another model", _catalog_answer, ["--model", str(XS)], "has hidden size 64, the answer's model qwen3-8b 4096"),
    ("a Hub id", _catalog_answer, ["--model", "Qwen/Qwen3-8B"], "--model Qwen/Qwen3-8B is not a local folder"),
    (
        "tasks outside the map",
        lambda t: answer(t / "arc.json", {"KA": 0.5}, {"KM": [], "KA": ["arc_easy"], "KR": []}),
        ["--model", str(XS)],
        "the answer's tier KA is predicted over arc_easy; tier map",
    ),
    (
        "config field",
        lambda t: _write(t, "c.yml", yaml.safe_dump({"model": str(XS), **CONFIG, "bits": 9})),
        [],
        "field 'bits': bits must be an integer in 2..8",
    ),
    (
        "config missing field",
        lambda t: _write(t, "m.json", json.dumps({"model": str(XS), "bits": 4, "group_size": 32})),
        [],
        "field 'calib_samples': required",
    ),
    (
        "group size",
        lambda t: _write(t, "g.json", json.dumps({"model": str(XS), "bits": 4, "group_size": 48, "calib_samples": 4})),
        ["--calib-file", str(XS.parents[1] / "calib" / "strata-world.txt"), "--seqlen", "16"],
        "group size 48 does not divide the input width 64",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("make", "args", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, make: Any, args: list[str], message: str) -> None:
    path = make(tmp_path)
    proc = verify(str(path), *args, "--store", str(tmp_path / "s.sqlite"), "-q")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("calibrate: error: ") and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert message.format(tmp=tmp_path) in proc.stderr and "Traceback" not in proc.stderr


# --- the arithmetic ----------------------------------------------------------------------------------------------


def test_a_tier_over_seeds_averages_accuracy_and_keeps_the_binomial_error_of_its_items() -> None:
    chance = {"a": 0.25, "b": 0.5}
    seeds = [{"a": (30, 40), "b": (20, 40)}, {"a": (34, 40), "b": (24, 40)}]
    pred = AnswerTier(mean=0.5, median=0.55, lo=0.3, hi=0.6, tasks=["a", "b"])
    got = tier_check(["a", "b"], seeds, chance, pred, target=0.5)
    # accuracy over seeds: a 0.8 (adjusted 0.7333), b 0.55 (adjusted 0.1); the tier 0.41667
    assert_close(got.measured.mean, (0.8 - 0.25) / 0.75 / 2 + 0.1 / 2, rel=1e-12, abs_=1e-12)
    se = ((0.8 * 0.2 / 39) / 0.75**2 + (0.55 * 0.45 / 39) / 0.25) ** 0.5 / 2
    assert_close(got.stderr, se, rel=1e-12, abs_=1e-12)
    assert got.passes is False and got.inside is True
    assert got.spread is not None
    values = [((0.75 - 0.25) / 0.75 + 0.0) / 2, ((0.85 - 0.25) / 0.75 + 0.2) / 2]
    assert_close(got.spread.values, values, rel=1e-12, abs_=1e-12)
    assert_close(got.spread.range, values[1] - values[0], rel=1e-12, abs_=1e-12)
    assert got.spread.interval_wider is (2 * Z90 * got.spread.sd < 0.3)
    one = tier_check(["a"], seeds[:1], chance)
    assert one.spread is None and one.predicted is None and one.passes is None


# --- the zoo: a real recommendation from the profile fitted on the zoo's own sweep ------------------------------

ZOO = XS.parent / "strata-zoo-62k"
ZOO_SPEC = XS.parent.parent / "sweep-zoo.yaml"


def test_the_zoos_recommendation_verifies_end_to_end_inside_its_intervals(tmp_path: Path) -> None:
    """`advisor recommend` on a zoo model with the strata-world profile, conditioned on the model's unquantized
    scores as `calibrate evaluate` measures them (the sweep's reference rows), then `calibrate verify` quantizes it
    with two calibration seeds the sweep never drew, on the sweep's protocol: every tier inside its 90% interval,
    and the seed-to-seed spread is reported."""
    import advisor
    from advisor.api import resolve_model
    from calibrate.store import Store

    with Store.open(ZOO_SPEC.parent / "sweep-zoo.sqlite") as store:
        ref = [r for r in store.rows(model=ZOO.name) if r.group_size is None]
    baseline = {"tasks": {r.task: {"mean": r.accuracy, "n": r.n_items} for r in ref}}
    model = resolve_model(str(ZOO), family="strata-world")
    rec = advisor.recommend(
        model, min_km=0.5, min_ka=0.2, min_kr=0.5, baseline=baseline,
        bits=[3, 4, 8], group_sizes=[8, 16, 32, -1], calib_samples=[4, 16, 64, 256],
    )  # fmt: skip
    assert rec.found and rec.profile.name == "strata-world" and rec.recommendation is not None
    assert not rec.recommendation.extrapolates
    path = tmp_path / "answer.json"
    path.write_text(rec.model_dump_json())
    args = ["--model", str(ZOO), "--spec", str(ZOO_SPEC), "--store", str(tmp_path / "v.sqlite"), "--seed", "2"]
    proc = verify(str(path), *args, "--seeds", "2", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runs"] == [{"seed": 2, "reused": False}, {"seed": 3, "reused": False}] and report["passed"]
    for t in TIERS:
        tier = report["tiers"][t]
        assert tier["inside"], (t, tier)
        assert tier["spread"]["sd"] >= 0 and tier["spread"]["interval_wider"]
