"""Remote executors (issue 6): the small sweep through a local Ray instance and through submitit's local executor
stores the same rows as the local executor; a unit that keeps failing is retried up to the bound and reported,
and every other unit's rows are committed. Skipped where ray / submitit are not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from close import assert_close
from tiny_sweep import XS, tiny_spec
from typer.testing import CliRunner

from calibrate.spec import SweepSpec, parse_spec
from calibrate.store import Store
from calibrate.sweep import LocalExecutor, run_sweep
from strata.rows import ResultRow

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
N_TASKS = 3  # the xs checkpoint's tier map: one task per tier
N_CONFIGS = 3  # the reference and (B, G) in {2, 4} x {32}


def _spec_dict(store: Path, models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return tiny_spec(store, **({"models": models} if models else {}))


def _rows(store: Path) -> dict[str, ResultRow]:
    with Store.open(store, create=False) as db:
        return {r.key(): r for r in db.rows()}


def _content(row: ResultRow, ignore: tuple[str, ...]) -> dict[str, Any]:
    """What must not depend on the executor: everything but timings and the device."""
    data = row.model_dump()
    data["extra"] = {k: v for k, v in data["extra"].items() if k not in ("timings", "device", *ignore)}
    return data


def _assert_same_rows(got: dict[str, ResultRow], want: dict[str, ResultRow], ignore: tuple[str, ...] = ()) -> None:
    assert len(want) == N_CONFIGS * N_TASKS
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert (got[key].correct, got[key].n_items) == (row.correct, row.n_items)
        # counts, keys and strings exactly; the accuracies computed from them within rounding
        assert_close(_content(got[key], ignore), _content(row, ignore), rel=1e-12, abs_=1e-12)


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in OFFLINE}
    os.environ.update(OFFLINE)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ResultRow]:
    store = tmp_path_factory.mktemp("local") / "s.sqlite"
    summary = run_sweep(parse_spec(_spec_dict(store)), executor=LocalExecutor())
    assert summary.ran == N_CONFIGS
    return _rows(store)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": OFFLINE},
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


def _broken_copy(tmp_path: Path) -> Path:
    """The xs checkpoint with unreadable weights: it passes the driver's checks and breaks inside the worker."""
    broken = tmp_path / "broken-xs"
    shutil.copytree(XS, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    return broken


def test_ray_stores_the_same_rows_as_the_local_executor(
    ray_session: Any, local_rows: dict[str, ResultRow], tmp_path: Path
) -> None:
    from calibrate.executors import RayExecutor

    store = tmp_path / "s.sqlite"
    summary = run_sweep(parse_spec(_spec_dict(store)), executor=RayExecutor(num_cpus=1, max_retries=0))
    assert summary.ran == N_CONFIGS and summary.rows_added == N_CONFIGS * N_TASKS
    _assert_same_rows(_rows(store), local_rows)


def test_ray_retries_a_failing_unit_up_to_the_bound_reports_it_and_commits_the_rest(
    ray_session: Any, local_rows: dict[str, ResultRow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calibrate import executors
    from calibrate.executors import RayExecutor, UnitsFailed

    real, marker = executors.iter_unit, tmp_path / "crashed"

    def crash_once(spec: Any, unit: Any, verbose: bool = False) -> Iterator[list[ResultRow]]:
        # The good model's quantized unit: its worker process dies after handing back one configuration, once.
        for rows in real(spec, unit, verbose):
            yield rows
            if unit.kind == "quantized" and unit.model.label != "broken" and not marker.exists():
                marker.touch()
                os._exit(1)

    monkeypatch.setattr(executors, "iter_unit", crash_once)  # a closure: Ray ships it by value
    models = [
        {"model": str(XS), "family": "strata-world"},
        {"model": str(_broken_copy(tmp_path)), "name": "broken", "family": "strata-world"},
    ]
    store = tmp_path / "s.sqlite"
    spec = parse_spec(_spec_dict(store, models))
    events: list[str] = []
    with pytest.raises(UnitsFailed) as err:
        run_sweep(spec, executor=RayExecutor(num_cpus=1, max_retries=1, log=events.append))
    failures = err.value.failures
    assert sorted(f.unit.kind for f in failures) == ["quantized", "reference"]
    assert all(f.unit.model.label == "broken" and f.attempts == 2 for f in failures)
    assert sum("retrying" in e and "broken" in e for e in events) == 2  # one retry per unit, then given up
    # The crashed unit was resubmitted with only the configuration it had not handed back.
    retried = [e for e in events if "retrying strata-world-xs" in e]
    assert len(retried) == 1
    assert retried[0].startswith("retrying strata-world-xs Cb=4 seed=0: 1 configuration(s) (attempt 2 of 2): ")
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all(ln.startswith("failed: broken") and "2 attempt(s)" in ln for ln in lines)
    # The good model's rows were all committed, identical to the local executor's (the spec hash differs: the
    # spec names two models).
    got = _rows(store)
    assert {r.model for r in got.values()} == {"strata-world-xs"}
    _assert_same_rows(got, local_rows, ignore=("spec_hash",))
    # A rerun recomputes nothing stored: only the broken units are tried again.
    with pytest.raises(UnitsFailed):
        run_sweep(spec, executor=RayExecutor(num_cpus=1, max_retries=0))
    assert len(_rows(store)) == N_CONFIGS * N_TASKS


def test_slurm_local_through_the_cli_stores_the_same_rows(local_rows: dict[str, ResultRow], tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    store = tmp_path / "s.sqlite"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(_spec_dict(store)))
    cmd = [sys.executable, "-m", "calibrate.cli", "sweep", str(spec_path), "-q", "--executor", "slurm"]
    cmd += ["--slurm-local", "--slurm-folder", str(tmp_path / "logs"), "--max-retries", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, **OFFLINE})
    assert proc.returncode == 0, proc.stderr
    assert f"{N_CONFIGS} configuration(s) run" in " ".join(proc.stderr.split())  # (rich wraps at 80 columns)
    assert any((tmp_path / "logs").rglob("*_log.out"))  # submitit's per-job logs
    _assert_same_rows(_rows(store), local_rows)


def test_the_cli_names_the_extra_when_the_executor_library_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from calibrate.cli import app

    for lib in ("ray", "submitit"):
        monkeypatch.setitem(sys.modules, lib, None)  # import (and find_spec) of it now fails
    for executor in ("ray", "slurm"):
        result = CliRunner().invoke(app, ["sweep", str(tmp_path / "spec.yaml"), "--executor", executor])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and 'pip install "strata[cluster]"' in lines[0]


def test_a_spec_round_trips_through_json_for_remote_workers(tmp_path: Path) -> None:
    spec = parse_spec(_spec_dict(tmp_path / "s.sqlite"))
    back = SweepSpec.model_validate_json(spec.model_dump_json())
    assert back == spec and back.content_hash() == spec.content_hash()


def test_executors_are_looked_up_by_name_and_their_options_checked_before_any_work() -> None:
    from calibrate.executors import ExecutorOptions, make_executor
    from calibrate.sweep import SweepError

    assert isinstance(make_executor("local", ExecutorOptions()), LocalExecutor)
    with pytest.raises(SweepError, match="--executor dask is not known; use local, ray or slurm"):
        make_executor("dask", ExecutorOptions())
    with pytest.raises(SweepError, match="--cpus-per-task and --timeout-min >= 1"):
        make_executor("local", ExecutorOptions(cpus_per_task=0))


def test_one_retry_policy_announces_each_retry_and_keeps_the_units_out_of_attempts() -> None:
    from calibrate.executors import Retries
    from calibrate.spec import ModelSpec
    from calibrate.sweep import Unit, UnitsFailed

    events: list[str] = []
    unit = Unit(ModelSpec(model="m"), "reference")
    retries = Retries(1, events.append)
    assert retries.again(unit, 1, "boom [job 7]") and not retries.again(unit, 2, "boom [job 8]")
    assert events == ["retrying m unquantized (attempt 2 of 2): boom [job 7]"]
    with pytest.raises(UnitsFailed, match=r"failed: m unquantized after 2 attempt\(s\): boom \[job 8\]"):
        retries.raise_failures()
