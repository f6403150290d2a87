"""Executors for the sweep engine, looked up by name (``EXECUTORS``): this process, a Ray cluster, or Slurm jobs.

Both plug into ``calibrate.sweep.run_sweep`` as an ``Executor``: they run units of work elsewhere and yield the
rows of each finished configuration back to the driver, which alone writes the store (one transaction per
configuration, idempotent). So a worker that dies loses only what it had not handed back, and nothing stored.

- ``run_unit`` / ``iter_unit`` are the module-level functions a remote process runs: one unit, through the same
  ``Worker`` as the local executor (the rows are built identically; only timings and the device in ``extra``
  differ). The last ``Worker`` is cached per process, so a Ray worker that gets another unit of the same model does
  not load it again.
- A unit that fails (an exception, a crashed or killed worker, a Slurm job that timed out) is submitted again, at most
  ``max_retries`` more times (``Retries``, one policy for both); with Ray only its configurations not handed back
  yet. Units that still fail are reported together after everything else has been committed: ``map`` then raises
  ``UnitsFailed``.
- ray and submitit are imported lazily (``pip install "strata[cluster]"``); ``MissingDependency`` names the fix.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibrate.spec import SweepSpec
from calibrate.sweep import Executor, LocalExecutor, Progress, SweepError, Unit, UnitFailure, UnitsFailed, Worker
from strata.errors import first_line
from strata.rows import ResultRow

INSTALL_HINT = 'pip install "strata[cluster]"'
# Passed on to remote workers when set on the driver (offline Hub, caches, quiet progress bars).
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "TQDM_DISABLE",
)


class MissingDependency(SweepError):
    """The executor's library is not installed."""


def _missing(executor: str, library: str) -> MissingDependency:
    return MissingDependency(f"--executor {executor} needs {library}, which is not installed; {INSTALL_HINT}")


def _require(executor: str, library: str) -> Any:
    """The executor's library, imported; or ``MissingDependency`` naming the install command."""
    try:
        return importlib.import_module(library)
    except ImportError:
        raise _missing(executor, library) from None


# --- what a remote process runs --------------------------------------------------------------------------------

_WORKER: tuple[str, Worker] | None = None


def _worker(spec: SweepSpec | str, verbose: bool) -> Worker:
    global _WORKER
    spec_json = spec if isinstance(spec, str) else spec.model_dump_json()
    if _WORKER is None or _WORKER[0] != spec_json:
        _WORKER = None  # free the previous worker's model first
        parsed = SweepSpec.model_validate_json(spec_json) if isinstance(spec, str) else spec
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if verbose else None
        _WORKER = (spec_json, Worker(parsed, log))
    return _WORKER[1]


def iter_unit(spec: SweepSpec | str, unit: Unit, verbose: bool = False) -> Iterator[list[ResultRow]]:
    """The rows of each configuration of ``unit`` as it finishes (a spec object, or its JSON)."""
    yield from _worker(spec, verbose).run(unit)


def run_unit(spec: SweepSpec | str, unit: Unit, verbose: bool = False) -> list[list[ResultRow]]:
    """One unit of work: the rows of each of its configurations (one row per task)."""
    return list(iter_unit(spec, unit, verbose))


# --- helpers ---------------------------------------------------------------------------------------------------


def _remaining(unit: Unit, done: set[tuple[int, int]]) -> Unit:
    """``unit`` without the configurations already handed back."""
    if unit.kind == "reference":
        return unit
    configs = tuple(c for c in unit.configs if (c.bits, c.group_size) not in done)
    return Unit(unit.model, unit.kind, unit.seed, unit.calib_samples, configs)


def _config_of(rows: list[ResultRow]) -> tuple[int, int] | None:
    if not rows or rows[0].group_size is None:
        return None
    return int(rows[0].bits), rows[0].group_size


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


class Retries:
    """The retry policy of the remote executors: a unit that fails is submitted again, at most ``max_retries`` more
    times, each retry announced in one line; a unit out of attempts is kept for ``UnitsFailed``."""

    def __init__(self, max_retries: int, log: Progress) -> None:
        if max_retries < 0:
            raise SweepError(f"max_retries must be >= 0, got {max_retries}")
        self.max_retries = max_retries
        self.log = log
        self.failures: list[UnitFailure] = []

    def again(self, unit: Unit, attempt: int, error: str) -> bool:
        """Whether to submit ``unit`` again (as attempt ``attempt + 1``) after it failed with ``error``."""
        if attempt <= self.max_retries:
            self.log(f"retrying {unit.describe()} (attempt {attempt + 1} of {self.max_retries + 1}): {error}")
            return True
        self.failures.append(UnitFailure(unit, attempt, error))
        return False

    def raise_failures(self) -> None:
        if self.failures:
            raise UnitsFailed(self.failures)


# --- Ray -----------------------------------------------------------------------------------------------------------


class RayExecutor:
    """Units as Ray tasks with resource requests (``num_gpus``, ``num_cpus``), on an existing cluster (``address``:
    ``auto``, ``ray://host:10001``) or a local one started here. Each task streams its configurations' rows back
    as they finish; a failed task is resubmitted with the configurations it had not returned."""

    def __init__(
        self,
        address: str | None = None,
        num_gpus: float = 0.0,
        num_cpus: float = 1.0,
        max_retries: int = 2,
        *,
        log: Progress | None = None,
        env_vars: dict[str, str] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.log = log or (lambda _msg: None)
        self.retries = Retries(max_retries, self.log)
        self.address = address
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.env_vars = forwarded_env() if env_vars is None else env_vars
        self.init_kwargs = init_kwargs or {}

    @property
    def failures(self) -> list[UnitFailure]:
        return self.retries.failures

    def _connect(self) -> tuple[Any, bool]:
        ray = _require("ray", "ray")
        if ray.is_initialized():
            return ray, False
        self.log(f"connecting to Ray at {self.address}" if self.address else "starting a local Ray instance")
        kwargs: dict[str, Any] = {
            "address": self.address,
            "log_to_driver": False,  # workers' output stays in Ray's logs; the driver shows progress
            "logging_level": "WARNING",
            **self.init_kwargs,
        }
        if not self.address or not self.address.startswith("ray://"):
            kwargs.setdefault("include_dashboard", False)
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            msg = f"cannot connect to Ray at {self.address} ({exc}); start the cluster or fix --address"
            raise SweepError(msg) from None
        return ray, True

    def map(self, spec: SweepSpec, units: list[Unit]) -> Iterator[list[ResultRow]]:
        self.retries.failures = []
        if not units:
            return
        ray, started = self._connect()
        task = ray.remote(iter_unit).options(
            num_gpus=self.num_gpus,
            num_cpus=self.num_cpus,
            max_retries=0,  # retried here, with only the configurations still missing
            num_returns="streaming",
            runtime_env={"env_vars": self.env_vars},
        )
        spec_ref = ray.put(spec.model_dump_json())
        running: dict[Any, tuple[Unit, int, set[tuple[int, int]]]] = {}

        def submit(unit: Unit, attempt: int, done: set[tuple[int, int]]) -> None:
            running[task.remote(spec_ref, unit)] = (unit, attempt, done)

        for u in units:
            submit(u, 1, set())
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                gen = ready[0]
                unit, attempt, done = running[gen]
                try:
                    rows = ray.get(next(gen))
                except StopIteration:
                    del running[gen]
                    continue
                except Exception as exc:
                    del running[gen]
                    left = _remaining(unit, done)
                    # (a failure after its last configuration was handed back loses nothing)
                    if left.size and self.retries.again(left, attempt, first_line(exc)):
                        submit(left, attempt + 1, done)
                    continue
                cfg = _config_of(rows)
                if cfg is not None:
                    done.add(cfg)
                yield rows
        finally:
            for gen in running:  # interrupted: stop what is still running
                with contextlib.suppress(Exception):
                    ray.cancel(gen, force=True)
            if started:
                ray.shutdown()
        self.retries.raise_failures()


# --- Slurm (submitit) ----------------------------------------------------------------------------------------------


class SlurmExecutor:
    """Units as a Slurm job array through submitit (``local=True``: submitit's LocalExecutor, one subprocess per
    unit, for tests and single machines). The driver polls the jobs and commits each unit's rows when its job ends;
    failed jobs are resubmitted, at most ``max_retries`` times. Job logs go to ``folder``."""

    def __init__(
        self,
        folder: str | Path = "submitit-logs",
        partition: str | None = None,
        gpus_per_task: int = 0,
        cpus_per_task: int = 1,
        timeout_min: int = 240,
        max_retries: int = 2,
        local: bool = False,
        *,
        log: Progress | None = None,
        poll_s: float | None = None,
        slurm_params: dict[str, Any] | None = None,
    ) -> None:
        self.log = log or (lambda _msg: None)
        self.retries = Retries(max_retries, self.log)
        self.folder = Path(folder)
        self.partition = partition
        self.gpus_per_task = gpus_per_task
        self.cpus_per_task = cpus_per_task
        self.timeout_min = timeout_min
        self.local = local
        self.poll_s = poll_s if poll_s is not None else (0.5 if local else 10.0)
        self.slurm_params = slurm_params or {}

    @property
    def failures(self) -> list[UnitFailure]:
        return self.retries.failures

    def _executor(self) -> Any:
        submitit = _require("slurm", "submitit")
        folder = self.folder / "%j"
        if self.local:
            local = submitit.LocalExecutor(folder=folder)
            local.update_parameters(timeout_min=self.timeout_min, gpus_per_node=self.gpus_per_task)
            return local
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = {
            "name": "strata-sweep",
            "timeout_min": self.timeout_min,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_task,
            "gpus_per_node": self.gpus_per_task,
            **self.slurm_params,
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        return ex

    def map(self, spec: SweepSpec, units: list[Unit]) -> Iterator[list[ResultRow]]:
        self.retries.failures = []
        if not units:
            return
        ex = self._executor()
        spec_json = spec.model_dump_json()
        running: list[tuple[Any, Unit, int]] = []

        def submit(batch: list[Unit], attempt: int) -> None:
            jobs = ex.map_array(run_unit, [spec_json] * len(batch), batch, [True] * len(batch))
            running.extend((job, u, attempt) for job, u in zip(jobs, batch, strict=True))
            ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
            self.log(f"submitted {len(batch)} unit(s) as job(s) {', '.join(ids)}")

        submit(units, 1)
        try:
            while running:
                finished = [r for r in running if r[0].done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                retry: dict[int, list[Unit]] = {}  # attempt -> units
                for item in finished:
                    running.remove(item)
                    job, unit, attempt = item
                    try:
                        result = job.result()
                    except Exception as exc:
                        if self.retries.again(unit, attempt, f"{first_line(exc)} [job {job.job_id}]"):
                            retry.setdefault(attempt + 1, []).append(unit)
                        continue
                    yield from result
                for next_attempt, batch in retry.items():
                    submit(batch, next_attempt)
        finally:
            for job, _unit, _attempt in running:  # interrupted: cancel what is still queued or running
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
        self.retries.raise_failures()


# --- the registry: executors by name -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorOptions:
    """What the ``calibrate sweep`` flags say about where units run; each executor reads the fields it uses."""

    address: str | None = None  # ray: cluster address; None starts a local instance
    gpus_per_task: float = 0
    cpus_per_task: int = 1
    max_retries: int = 2  # ray, slurm
    partition: str | None = None  # slurm
    slurm_folder: str = "submitit-logs"
    timeout_min: int = 240
    slurm_local: bool = False
    log: Progress | None = None  # local: the stage in flight (model, unit, layer)
    events: Progress | None = None  # remote: submissions and retries

    def check(self) -> None:
        if self.max_retries < 0 or self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.timeout_min < 1:
            raise SweepError("--max-retries and --gpus-per-task must be >= 0, --cpus-per-task and --timeout-min >= 1")


def _slurm(o: ExecutorOptions) -> SlurmExecutor:
    if o.gpus_per_task != int(o.gpus_per_task):
        raise SweepError(f"--gpus-per-task {o.gpus_per_task}: Slurm gives whole GPUs; use an integer (fractions: ray)")
    return SlurmExecutor(
        o.slurm_folder,
        o.partition,
        int(o.gpus_per_task),
        o.cpus_per_task,
        o.timeout_min,
        o.max_retries,
        local=o.slurm_local,
        log=o.events,
    )


@dataclass(frozen=True)
class Backend:
    factory: Callable[[ExecutorOptions], Executor]
    library: str | None = None  # what it imports, checked before any work


EXECUTORS: dict[str, Backend] = {
    "local": Backend(lambda o: LocalExecutor(o.log)),
    "ray": Backend(
        lambda o: RayExecutor(o.address, o.gpus_per_task, o.cpus_per_task, o.max_retries, log=o.events), "ray"
    ),
    "slurm": Backend(_slurm, "submitit"),
}


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor registered as ``name``, built from ``options``; bad names, options or a missing library are
    a ``SweepError`` before any work."""
    backend = EXECUTORS.get(name)
    if backend is None:
        *first, last = EXECUTORS
        raise SweepError(f"--executor {name} is not known; use {', '.join(first)} or {last}")
    if backend.library is not None and importlib.util.find_spec(backend.library) is None:  # (not imported yet)
        raise _missing(name, backend.library)
    options.check()
    return backend.factory(options)
