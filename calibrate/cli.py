"""`calibrate`: the command line of the results store, tiered evaluation and PTQ sweeps.

Heavy imports (torch, transformers, lm-eval) happen inside the commands that need them.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _commands() -> None:
    # A callback keeps `calibrate` a command group even while it has a single command (typer would flatten it).
    pass


def _fail(message: str) -> typer.Exit:
    """Bad input: one line on stderr, exit status 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.command("import-published")
def import_published(
    store: str = typer.Option(..., "--store", help="results store (SQLite) to create or add to"),
    folder: str | None = typer.Option(None, "--dir", help="folder of published CSVs (default: the shipped copy)"),
    tier_map: str | None = typer.Option(None, "--tier-map", help="task -> tier map YAML (default: the project's)"),
) -> None:
    """Import published PTQ measurements (CSV) into a results store; rows already stored are left as they are."""
    from pathlib import Path

    from calibrate.published import PublishedDataError, published_csvs, read_published_csv
    from calibrate.store import Store, StoreError
    from strata.tiermap import TierMapError, load_tier_map

    shipped = Path(__file__).parent / "data" / "published"
    try:
        tmap = load_tier_map(tier_map)
        files = published_csvs(folder or shipped)
        rows = {f.name: list(read_published_csv(f, tmap)) for f in files}  # validate all before writing any
        with Store.open(store) as db:
            for name, batch in rows.items():
                typer.echo(f"{name}: {db.add(batch)} new of {len(batch)} rows", err=True)
            typer.echo(f"{store}: {db.count()} rows", err=True)
    except (PublishedDataError, StoreError, TierMapError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def evaluate(
    model: str = typer.Option(..., "--model", help="Hugging Face model id or local model directory"),
    tier_map: str | None = typer.Option(
        None, "--tier-map", help="tier map YAML (default: the checkpoint's own tier_map.yaml, else the project's)"
    ),
    tasks: str | None = typer.Option(None, "--tasks", help="comma-separated subset of the tier map's tasks"),
    limit: int | None = typer.Option(None, "--limit", "--samples", help="items per task, a seeded random subset"),
    seed: int = typer.Option(0, "--seed", help="seed of the item subset"),
    batch_size: int = typer.Option(256, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16"),
    rtn_bits: int | None = typer.Option(None, "--rtn-bits", help="round-to-nearest fake-quantize linear layers first"),
    rtn_group_size: int = typer.Option(-1, "--rtn-group-size", help="RTN group size (-1: per channel)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="run the model's own Python code"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Evaluate one model on every task of a tier map (lm-eval), per task and per tier."""
    import json
    import os

    from strata.errors import first_line

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars would bury the one-line answer
    if device not in ("cpu", "cuda"):
        raise _fail(f"--device must be cpu or cuda, got {device}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise _fail(f"--dtype must be float32, bfloat16 or float16, got {dtype}")

    from calibrate.evaluate import EvaluateError, EvaluationFailed, Evaluator
    from strata.tiermap import TierMapError

    task_list = [t for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        ev = Evaluator(
            model,
            tier_map,
            tasks=task_list,
            device=device,
            batch_size=batch_size,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        config = None
        if rtn_bits is not None:
            from calibrate.rtn import apply_rtn

            apply_rtn(ev.model, rtn_bits, rtn_group_size)
            config = {"bits": rtn_bits, "group_size": rtn_group_size, "calib_samples": None, "method": "rtn"}
        result = ev.evaluate(limit=limit, seed=seed, config=config)
    except (EvaluateError, TierMapError) as exc:
        raise _fail(str(exc)) from None
    except EvaluationFailed as exc:
        where = f" (task {exc.task})" if exc.task else ""
        typer.echo(f"error: model {model}: evaluate{where}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except ValueError as exc:  # e.g. an RTN group size that does not divide a layer
        raise _fail(first_line(exc)) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['model']}  ({result['evaluation']['seconds']:.1f} s)")
    for name, t in result["tasks"].items():
        typer.echo(f"  {name:<28} acc {t['mean']:.3f} ± {t['stderr']:.3f}  ({t['correct']}/{t['n']})")
    for tier, t in result["tiers"].items():
        typer.echo(f"  {tier}  chance-adjusted {t['mean']:.3f}  [{t['lo']:.3f}, {t['hi']:.3f}]  n={t['n']}")


@app.command()
def sweep(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="sweep spec YAML (see examples/sweep-tiny.yaml)"),
    store: str | None = typer.Option(None, "--store", help="results store (default: the spec's store:)"),
    executor: str = typer.Option(
        "local", "--executor", help="local (this process), ray (a Ray cluster), slurm (job arrays via submitit)"
    ),
    address: str | None = typer.Option(
        None, "--address", help="ray: cluster address (auto, ray://host:10001); default: start a local instance"
    ),
    gpus_per_task: float = typer.Option(0, "--gpus-per-task", help="ray/slurm: GPUs per unit of work"),
    cpus_per_task: int = typer.Option(1, "--cpus-per-task", help="ray/slurm: CPU cores per unit of work"),
    partition: str | None = typer.Option(None, "--partition", help="slurm: partition"),
    slurm_folder: str = typer.Option("submitit-logs", "--slurm-folder", help="slurm: job scripts and logs"),
    timeout_min: int = typer.Option(240, "--timeout-min", help="slurm: time limit per job, minutes"),
    slurm_local: bool = typer.Option(False, "--slurm-local", help="slurm: run the jobs as local subprocesses"),
    max_retries: int = typer.Option(2, "--max-retries", help="ray/slurm: resubmissions of a failed unit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display; the summary line only"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would run, run nothing"),
) -> None:
    """Run a PTQ sweep: quantize, evaluate per tier, commit each configuration; rerun to resume."""
    import importlib.util
    import os
    import signal

    os.environ.setdefault("TQDM_DISABLE", "1")
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from calibrate.calibdata import CalibrationError
    from calibrate.evaluate import EvaluateError
    from calibrate.spec import SpecError, load_spec
    from calibrate.store import StoreError
    from calibrate.sweep import LocalExecutor, SweepError, SweepSummary, run_sweep, status
    from strata.rows import ResultRow
    from strata.tiermap import TierMapError

    console = Console(stderr=True)
    needs = {"local": None, "ray": "ray", "slurm": "submitit"}
    if executor not in needs:
        raise _fail(f"--executor {executor} is not known; use local, ray or slurm")
    lib = needs[executor]
    if lib is not None and importlib.util.find_spec(lib) is None:
        raise _fail(f'--executor {executor} needs {lib}, which is not installed; pip install "strata[cluster]"')
    if max_retries < 0 or gpus_per_task < 0 or cpus_per_task < 1 or timeout_min < 1:
        raise _fail("--max-retries and --gpus-per-task must be >= 0, --cpus-per-task and --timeout-min >= 1")
    if executor == "slurm" and gpus_per_task != int(gpus_per_task):
        raise _fail(f"--gpus-per-task {gpus_per_task}: Slurm gives whole GPUs; use an integer (fractions: ray)")
    try:
        spec = load_spec(spec_path)
        if dry_run:
            for line in status(spec, store):
                typer.echo(f"{line['model']}: {line['left']} of {line['planned']} configurations to run")
            return
    except (SpecError, StoreError, TierMapError, EvaluateError) as exc:
        raise _fail(str(exc)) from None

    # SIGTERM (a scheduler's pre-emption) stops like Ctrl-C: what is committed stays, the rest resumes later.
    def _term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    bar = Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    # Two lines: configurations of the whole sweep (with ETA), and the stage in flight (model, unit, layer).
    task = bar.add_task("configurations", total=None)
    stage = bar.add_task("starting", total=None)
    summary_box: list[SweepSummary] = []

    def on_start(summary: SweepSummary) -> None:
        # reset, so the ETA is the rate of this run, not inflated by configurations already stored
        bar.reset(task, total=summary.planned, completed=summary.already_stored)
        summary_box[:] = [summary]

    def on_config(summary: SweepSummary, rows: list[ResultRow]) -> None:
        bar.update(task, completed=summary.already_stored + summary.ran)
        summary_box[:] = [summary]

    def log(message: str) -> None:
        bar.update(stage, description=message[:44])

    def note(message: str) -> None:  # remote executors' events (submissions, retries) stay on screen
        (bar.console.print if not quiet else log)(message)

    from calibrate.executors import RayExecutor, SlurmExecutor, UnitsFailed

    runner: LocalExecutor | RayExecutor | SlurmExecutor
    if executor == "ray":
        runner = RayExecutor(address, gpus_per_task, cpus_per_task, max_retries, log=note)
    elif executor == "slurm":
        runner = SlurmExecutor(
            slurm_folder,
            partition,
            int(gpus_per_task),
            cpus_per_task,
            timeout_min,
            max_retries,
            local=slurm_local,
            log=note,
        )
    else:
        runner = LocalExecutor(log)
    try:
        with bar:
            result = run_sweep(spec, store_path=store, executor=runner, on_config=on_config, log=log, on_start=on_start)
    except KeyboardInterrupt:
        n = summary_box[0].ran if summary_box else 0
        console.print(f"interrupted: {n} configuration(s) committed this run; rerun the same command to resume")
        raise typer.Exit(code=130) from None
    except UnitsFailed as exc:
        n = summary_box[0].ran if summary_box else 0
        console.print(f"{n} configuration(s) committed this run; {len(exc.failures)} unit(s) failed:")
        for f in exc.failures:
            typer.echo(f.describe(), err=True)
        typer.echo("rerun the same command to retry them; what is stored is not recomputed", err=True)
        raise typer.Exit(code=1) from None
    except (SpecError, StoreError, TierMapError, EvaluateError, CalibrationError, SweepError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"{result.store}: {result.ran} configuration(s) run, {result.already_stored} already stored, "
        f"{result.planned} planned, {result.rows_added} rows added, {result.seconds:.1f} s"
    )


@app.command("status")
def status_cmd(
    path: str = typer.Argument(..., metavar="SPEC_OR_STORE", help="a sweep spec YAML, or a results store"),
    store: str | None = typer.Option(None, "--store", help="with a spec: the store (default: the spec's store:)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """How far a sweep is: with a spec, configurations planned/stored/left per model; with a store, what it holds."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from calibrate.evaluate import EvaluateError
    from calibrate.spec import SpecError, load_spec
    from calibrate.store import Store, StoreError
    from calibrate.sweep import status
    from strata.tiermap import TierMapError

    is_spec = Path(path).suffix in (".yaml", ".yml")
    try:
        if is_spec:
            spec = load_spec(path)
            lines = status(spec, store)
            title = f"{spec.name}: {store or spec.store}"
        else:
            with Store.open(path, create=False) as db:
                lines = db.summary()
            title = path
    except (SpecError, StoreError, TierMapError, EvaluateError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"title": title, "rows": lines}, indent=2))
        return
    table = Table(title=title)
    for col in lines[0] if lines else ["(empty)"]:
        table.add_column(col, justify="left" if col in ("model", "source", "method") else "right")
    for line in lines:
        table.add_row(*(("yes" if v else "no") if isinstance(v, bool) else str(v) for v in line.values()))
    Console().print(table)


@app.command()
def export(
    store_arg: str | None = typer.Argument(None, metavar="STORE", help="results store (SQLite)"),
    store: str | None = typer.Option(None, "--store", help="results store (same as the STORE argument)"),
    csv_path: str = typer.Option(..., "--csv", help="CSV file to write ('-' = stdout)"),
    source: str | None = typer.Option(None, "--source", help="only rows of this source (e.g. strata-sweep)"),
    model: str | None = typer.Option(None, "--model", help="only rows of this model"),
) -> None:
    """Write stored rows as CSV in the published data's columns (+ exact counts); `fit` reads both the same way."""
    import sys

    from calibrate.published import write_csv
    from calibrate.store import Store, StoreError

    path = store_arg or store
    if path is None:
        raise _fail("name the store: calibrate export STORE --csv FILE")
    try:
        with Store.open(path, create=False) as db:
            rows = list(db.rows(source=source or None, model=model or None))
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if csv_path == "-":
        write_csv(rows, sys.stdout)
        return
    try:
        with open(csv_path, "w", newline="") as out:
            n = write_csv(rows, out)
    except OSError as exc:
        raise _fail(f"cannot write {csv_path} ({exc.strerror}); pass a writable --csv path") from None
    typer.echo(f"{csv_path}: {n} rows", err=True)


@app.command()
def quantize(
    model: str = typer.Option(..., "--model", help="Hugging Face model id or local model directory"),
    bits: int = typer.Option(..., "--bits", help="weight bits: 2, 3, 4 or 8"),
    group_size: int = typer.Option(128, "--group-size", help="-1 = per channel"),
    calib_samples: int = typer.Option(128, "--calib-samples", help="calibration samples (Cb)"),
    out: str = typer.Option(..., "--out", help="output directory for the GPTQ checkpoint"),
    calib_file: Annotated[
        list[str] | None, typer.Option("--calib-file", help="local .txt/.jsonl calibration text (repeatable)")
    ] = None,
    dataset: str | None = typer.Option(None, "--dataset", help="Hugging Face calibration dataset id"),
    dataset_name: str | None = typer.Option(None, "--dataset-name", help="dataset config, e.g. wikitext-2-raw-v1"),
    split: str = typer.Option("train", "--split"),
    text_field: str = typer.Option("text", "--text-field"),
    seqlen: int = typer.Option(2048, "--seqlen", help="tokens per calibration sample"),
    seed: int = typer.Option(0, "--seed", help="seed of the calibration draw"),
    sym: bool = typer.Option(True, "--sym/--asym", help="symmetric grid (GPTQModel's default)"),
    act_order: bool = typer.Option(False, "--act-order/--no-act-order", help="quantize columns by Hessian order"),
    damp: float = typer.Option(0.01, "--damp", help="damping, a fraction of mean diag H"),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | auto"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="run the model's own Python code"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Write a real, deployable GPTQ checkpoint with GPTQModel for one configuration (e.g. the advisor's pick)."""
    import json

    from calibrate.calibdata import CalibrationError
    from calibrate.deploy import DeployError, quantize_checkpoint

    try:
        summary = quantize_checkpoint(
            model,
            out,
            bits=bits,
            group_size=group_size,
            calib_samples=calib_samples,
            calib_files=calib_file or None,
            dataset=dataset,
            dataset_name=dataset_name,
            split=split,
            text_field=text_field,
            seqlen=seqlen,
            seed=seed,
            sym=sym,
            act_order=act_order,
            damp=damp,
            device=device,
            trust_remote_code=trust_remote_code,
        )
    except (DeployError, CalibrationError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


def main() -> None:
    from strata.errors import guard

    guard("calibrate", lambda: app(prog_name="calibrate"))


if __name__ == "__main__":
    main()
