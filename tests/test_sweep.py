"""The sweep engine: spec validation, calibration sets, planning, resume, and a real sweep on the shipped xs model."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_sweep import CALIB, ROOT, XS, tiny_spec

from calibrate import calibdata
from calibrate.spec import SpecError, load_spec, parse_spec
from calibrate.store import Store
from calibrate.sweep import Config, Unit, pending, plan, run_sweep, status


def _spec_dict(tmp_path: Path, **over: object) -> dict:
    return tiny_spec(tmp_path / "s.sqlite", **over)


def _sweep_cli(spec_path: Path) -> subprocess.CompletedProcess[str]:
    """``calibrate sweep SPEC -q`` in a fresh process, offline."""
    return subprocess.run(
        [sys.executable, "-m", "calibrate.cli", "sweep", str(spec_path), "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the spec ---------------------------------------------------------------------------------------------------


def test_the_shipped_example_spec_loads_with_paths_read_against_its_folder() -> None:
    spec = load_spec(ROOT / "examples" / "sweep-tiny.yaml")
    assert [Path(m.model) for m in spec.models] == [XS, XS.parent / "strata-world-s"]
    assert spec.calibration is not None and spec.calibration.files == [str(CALIB)]
    assert Path(spec.store) == ROOT / "examples" / "sweep-tiny.sqlite"
    assert [m.label for m in spec.models] == ["strata-world-xs", "strata-world-s"]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"bits": [9]}, "'bits'"),
        ({"group_sizes": [0]}, "'group_sizes'"),
        ({"group_size": [32]}, "'group_size': unknown field"),
        ({"calibration": None}, "needs a calibration"),
        ({"calibration": {"files": ["a.txt"], "dataset": "wikitext"}}, "exactly one calibration source"),
        ({"device": "tpu"}, "'device'"),
        ({"version": 2}, "'version'"),
        ({"calib_samples": [0]}, "'calib_samples'"),
        ({"gptq": {"propagate": "sideways"}}, "'gptq.propagate'"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path: Path, change: dict, names: str) -> None:
    data = _spec_dict(tmp_path)
    data.update(change)
    if change.get("calibration") is None and "calibration" in change:
        del data["calibration"]
    with pytest.raises(SpecError) as err:
        parse_spec(data, "spec.yaml")
    message = str(err.value)
    assert names in message and "\n" not in message and message.startswith("spec.yaml: ")


def test_the_cli_rejects_a_bad_spec_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec_dict(tmp_path, bits=[1]))
    proc = subprocess.run(
        [sys.executable, "-m", "calibrate.cli", "sweep", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "'bits'" in proc.stderr


def test_rows_of_specs_that_differ_in_quantizer_or_evaluation_never_share_a_key(tmp_path: Path) -> None:
    base = parse_spec(_spec_dict(tmp_path))
    sym = parse_spec(_spec_dict(tmp_path, gptq={"sym": True}))
    more_items = parse_spec(_spec_dict(tmp_path, evaluation={"limit": 16}))
    assert len({base.protocol(), sym.protocol(), more_items.protocol()}) == 3
    assert base.protocol(reference=True) == sym.protocol(reference=True)  # the reference does not depend on GPTQ
    moved = parse_spec(_spec_dict(tmp_path, store="/elsewhere.sqlite", device="cuda"))
    assert moved.content_hash() == base.content_hash() != sym.content_hash()


# --- calibration sets -----------------------------------------------------------------------------------------


class _WordTokenizer:
    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [len(w) for w in text.split()]}


def test_calibration_windows_have_the_stated_length_and_nest_across_sizes() -> None:
    docs = [f"doc {i} " + "word " * (i % 7) for i in range(300)]
    big = calibdata.build(_WordTokenizer(), docs, 32, 16, seed=3, source="x")
    assert big.ids.shape == (32, 16) and big.effective == 32
    small = calibdata.build(_WordTokenizer(), docs, 8, 16, seed=3, source="x")
    assert (small.ids == big.ids[:8]).all()  # Cb=8 is the first 8 windows of Cb=32 under one seed
    other = calibdata.build(_WordTokenizer(), docs, 8, 16, seed=4, source="x")
    assert not (other.ids == small.ids).all()


def test_a_short_source_reports_its_effective_size_instead_of_pretending() -> None:
    docs = ["a b c d e f g h"] * 5  # 5 x 9 tokens (with EOS) = 45 tokens = 2 windows of 16
    got = calibdata.build(_WordTokenizer(), docs, 10, 16, seed=0, source="x")
    assert got.stated == 10 and got.effective == 2


def test_jsonl_calibration_reads_the_text_field_and_names_bad_rows(tmp_path: Path) -> None:
    good = tmp_path / "c.jsonl"
    good.write_text('{"text": "one two"}\n{"text": "three"}\n')
    assert calibdata.read_documents([good], None, None, "train", "text") == ["one two", "three"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(calibdata.CalibrationError, match=r"b.jsonl:2: no string field 'text'"):
        calibdata.read_documents([bad], None, None, "train", "text")


# --- planning and resume ------------------------------------------------------------------------------------------


def test_the_plan_is_a_reference_per_model_then_one_unit_per_seed_and_cb(tmp_path: Path) -> None:
    spec = parse_spec(_spec_dict(tmp_path, calib_samples=[4, 8], bits=[3, 4], group_sizes=[32, -1]))
    units = plan(spec)
    assert [u.kind for u in units] == ["reference", "quantized", "quantized"]
    assert [u.calib_samples for u in units[1:]] == [4, 8]
    assert units[1].configs == (Config(3, 32), Config(3, -1), Config(4, 32), Config(4, -1))


def test_pending_drops_configurations_stored_with_all_their_tasks(tmp_path: Path) -> None:
    spec = parse_spec(_spec_dict(tmp_path))
    units = plan(spec)
    label = spec.models[0].label
    done = {(label, None, None, None, None): 3, (label, 2.0, 32, 4, 0): 3, (label, 4.0, 32, 4, 0): 2}
    left = pending(units, done, lambda _m: 3)
    assert left == [Unit(spec.models[0], "quantized", 0, 4, (Config(4, 32),))]  # 2 of 3 tasks = not done


# --- a real sweep -------------------------------------------------------------------------------------------------


def test_a_sweep_stores_every_configuration_and_a_rerun_computes_nothing(tmp_path: Path) -> None:
    spec = parse_spec(_spec_dict(tmp_path))
    first = run_sweep(spec)
    assert (first.planned, first.already_stored, first.ran) == (3, 0, 3)
    with Store.open(spec.store) as store:
        rows = list(store.rows())
    assert len(rows) == 9  # 3 configurations x 3 tasks
    quant = [r for r in rows if r.method == "GPTQ"]
    assert {(r.bits, r.group_size) for r in quant} == {(2.0, 32), (4.0, 32)}
    for r in quant:
        assert r.calib_samples == 4 and r.calib_samples_effective == 4 and r.calib_seqlen == 16
        assert r.n_items == 8 and r.correct is not None and 0 <= r.correct <= 8 and r.tier in ("KM", "KA", "KR")
        assert r.extra["spec_hash"] == spec.content_hash()
        assert {"torch", "transformers", "lm_eval"} <= set(r.extra["versions"])
        assert {"model_load_s", "evaluate_s", "quantize_total_s", "calibration_s"} <= set(r.extra["timings"])
    ref = [r for r in rows if r.method == "FP32"]
    assert len(ref) == 3 and all(r.bits == 32 and r.params_b > 0 and r.hidden_size == 64 for r in ref)
    # 4-bit keeps the reference's accuracy better than 2-bit does (summed over the tasks)
    acc = {b: sum(r.correct or 0 for r in quant if r.bits == b) for b in (2.0, 4.0)}
    assert acc[4.0] >= acc[2.0]

    again = run_sweep(spec)
    assert (again.ran, again.already_stored, again.rows_added) == (0, 3, 0)
    assert status(spec) == [
        {"model": "strata-world-xs", "planned": 3, "stored": 3, "left": 0, "reference_stored": True}
    ]
    # the same configurations calibrated on other text are not stored yet (the reference does not calibrate)
    other = tmp_path / "other-calib.txt"
    other.write_text(CALIB.read_text())
    elsewhere = parse_spec(_spec_dict(tmp_path, calibration={"files": [str(other)], "seqlen": 16, "seeds": [0]}))
    assert status(elsewhere) == [
        {"model": "strata-world-xs", "planned": 3, "stored": 1, "left": 2, "reference_stored": True}
    ]

    out = tmp_path / "x.csv"
    subprocess.run(
        [sys.executable, "-m", "calibrate.cli", "export", "--store", spec.store, "--csv", str(out)], check=True
    )
    with out.open() as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == 9 and {"bits", "group_size", "calib_samples_effective", "extra"} <= set(exported[0])


def test_too_little_calibration_text_stops_with_a_clear_error_and_keeps_what_is_stored(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Fainutrith was born in Beishel .\n" * 6)  # 42 tokens: 2 windows of 16
    spec = parse_spec(_spec_dict(tmp_path, calibration={"files": [str(short)], "seqlen": 16}))
    proc = subprocess.run(
        [sys.executable, "-m", "calibrate.cli", "sweep", str(_write(tmp_path, spec.model_dump())), "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "yields 2 windows of 16 tokens, fewer than Cb=4" in proc.stderr
    with Store.open(spec.store) as store:  # the reference ran before the error, and stays
        assert {r.method for r in store.rows()} == {"FP32"}


def test_kill_9_mid_sweep_loses_nothing_committed_and_the_rerun_finishes(tmp_path: Path) -> None:
    spec_path = _write(tmp_path, _spec_dict(tmp_path, bits=[2, 3, 4, 8], calib_samples=[4, 8]))
    store_path = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "calibrate.cli", "sweep", str(spec_path), "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def committed() -> list[tuple]:
        if not store_path.exists():
            return []
        with sqlite3.connect(store_path) as conn:
            try:
                return conn.execute("SELECT row_key, created_at, correct FROM results ORDER BY row_key").fetchall()
            except sqlite3.OperationalError:  # table not created yet
                return []

    deadline = time.time() + 180
    while len(committed()) < 6 and time.time() < deadline:  # reference + one quantized configuration
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = committed()
    assert 6 <= len(before) < 27 and len(before) % 3 == 0  # whole configurations only, and not finished

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    after = committed()
    assert len(after) == 27  # 1 reference + 2 Cb x 4 bits, 3 tasks each
    assert set(before) <= set(after)  # what was committed before the kill is untouched
    assert f"{len(before) // 3} already stored" in rerun.stderr


def test_an_exported_sweep_reads_back_as_the_rows_it_came_from(tmp_path: Path) -> None:
    import io

    from calibrate.published import read_published_csv, write_csv
    from strata.rows import ResultRow
    from strata.tiermap import load_tier_map

    row = ResultRow(
        source="strata-sweep", source_table="gptq:asym|eval:all", model="m", family="f", params_b=1.1e-4,
        params_nonembed_b=9.9e-5, hidden_size=64, method="GPTQ", bits=3.0, group_size=-1, calib_samples=32,
        calib_samples_effective=31, calib_dataset="files:w.txt", calib_seqlen=16, calib_seed=2, task="world_kr",
        tier="KR", chance=0.25, metric="acc", value=100 * 7 / 9, accuracy=7 / 9, n_items=9, correct=7, n_shot=0,
        extra={"timings": {"evaluate_s": 1.5}, "spec_hash": "abc"},
    )  # fmt: skip
    buf = io.StringIO()
    write_csv([row], buf)
    path = tmp_path / "x.csv"
    path.write_text(buf.getvalue())
    (back,) = read_published_csv(path, load_tier_map(None))  # the default map does not know this task
    assert back == row and back.key() == row.key()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group_sizes": [48]}, "group size 48 does not divide the input width 64"),
        ({"calibration": {"files": ["/nonexistent/calib.txt"], "seqlen": 16}}, "calib.txt does not exist"),
        ({"models": ["/nonexistent/model"]}, "model path /nonexistent/model does not exist"),
        ({"store": "/proc/strata/s.sqlite"}, "cannot open store /proc/strata/s.sqlite"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_and_keeps_the_store(tmp_path: Path, change: dict, message: str) -> None:
    keep = tmp_path / "s.sqlite"
    with Store.open(keep) as store:
        store.add([_a_row()])
    path = _write(tmp_path, _spec_dict(tmp_path, **change))
    proc = _sweep_cli(path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    with Store.open(keep) as store:
        assert [r.key() for r in store.rows()] == [_a_row().key()]


def test_a_store_of_another_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store.open(path) as store:
        store.add([_a_row()])
        with store.conn:
            store.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = path.read_bytes()
    spec = _write(tmp_path, _spec_dict(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "calibrate.cli", "sweep", str(spec), "-q"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "schema version 99" in proc.stderr
    assert path.read_bytes() == before


def _a_row():  # type: ignore[no-untyped-def]
    from strata.rows import ResultRow

    return ResultRow(
        source="x", model="m", family="f", params_b=1.0, method="GPTQ", bits=4, task="t", metric="acc", value=50.0
    )


def test_fitting_a_sweep_where_nothing_costs_accuracy_is_refused_not_written(tmp_path: Path) -> None:
    from strata.rows import ResultRow

    def row(model: str, params: float, method: str, bits: float, g: int | None, cb: int | None) -> ResultRow:
        return ResultRow(
            source="strata-sweep", model=model, family="toy", params_b=params, hidden_size=64, method=method,
            bits=bits, group_size=g, calib_samples=cb, task="world_km", tier="KM", chance=0.25, metric="acc",
            value=100.0, accuracy=1.0, n_items=40, correct=40,
        )  # fmt: skip

    rows = [row(m, p, "FP32", 32, None, None) for m, p in (("a", 1e-4), ("b", 3e-4))]
    rows += [row(m, p, "GPTQ", b, 32, cb) for m, p in (("a", 1e-4), ("b", 3e-4)) for b in (3, 4) for cb in (4, 32)]
    with Store.open(tmp_path / "s.sqlite") as store:
        store.add(rows)
    out = tmp_path / "p.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fit.cli", "run", "--family", "toy", "--store", str(tmp_path / "s.sqlite"),
         "--no-published", "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "tier KM: every one of its 8 observations is the same" in proc.stderr
    assert not out.exists()


def test_a_model_that_does_not_load_exits_2_with_one_line(tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(XS, broken)
    (broken / "model.safetensors").write_bytes((XS / "model.safetensors").read_bytes()[:100])
    path = _write(tmp_path, _spec_dict(tmp_path, models=[str(broken)]))
    proc = _sweep_cli(path)
    assert proc.returncode == 2, proc.stderr
    assert "model broken: cannot load model" in proc.stderr and proc.stderr.strip().count("\n") == 0


# --- a library failing inside a unit: one line naming model, stage and task, exit 1, the store kept --------------


# A library raising inside the unit, in a fresh process: the GPTQ solve's Cholesky factorisation (a Hessian that is
# not positive definite) and lm-eval's evaluator (a bare assertion, as lm-eval raises on an empty continuation).
_RAISE = {
    "quantize": (
        "calibrate.gptq",
        "gptq",
        "torch.linalg.LinAlgError('linalg.cholesky: The factorization could not be completed because the input is "
        "not positive-definite (the leading minor of order 3 is not positive-definite).\\nsecond line')",
    ),
    "evaluate": ("lm_eval.evaluator", "evaluate", "AssertionError()"),
}


@pytest.mark.parametrize(
    ("where", "stage"),
    [("quantize", "quantize: _LinAlgError: linalg.cholesky"), ("evaluate", "evaluate (task strata_world_")],
)
def test_a_unit_failing_in_a_library_is_one_line_and_exit_1(tmp_path: Path, where: str, stage: str) -> None:
    keep = tmp_path / "s.sqlite"
    with Store.open(keep) as store:
        store.add([_a_row()])
    path = _write(tmp_path, _spec_dict(tmp_path, bits=[4]))
    module, name, error = _RAISE[where]
    code = (
        f"import importlib, runpy, sys, torch\n"
        f"def boom(*args, **kwargs):\n    raise {error}\n"
        f"setattr(importlib.import_module({module!r}), {name!r}, boom)\n"
        f"sys.argv = ['calibrate', 'sweep', {str(path)!r}, '-q']\n"
        f"runpy.run_module('calibrate.cli', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    assert failed and all(f"model strata-world-xs: {stage}" in line for line in failed), proc.stderr
    assert "second line" not in proc.stderr
    with Store.open(keep) as store:
        assert _a_row().key() in {r.key() for r in store.rows()}


def test_a_spec_names_a_dataset_mirror_read_against_its_folder(tmp_path: Path) -> None:
    data = _spec_dict(tmp_path)
    data["evaluation"] = {**data["evaluation"], "datasets": "mirror"}
    spec = load_spec(_write(tmp_path, data))
    assert spec.evaluation.datasets == str(tmp_path / "mirror")
    plain = load_spec(_write(tmp_path, _spec_dict(tmp_path)))
    assert spec.content_hash() == plain.content_hash()  # where the data is read from is not what is measured
