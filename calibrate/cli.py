"""`calibrate`: the command line of the results store, tiered evaluation and PTQ sweeps.

Heavy imports (torch, transformers, lm-eval) happen inside the commands that need them. Commands raise
``UserError``s; ``strata.cli.Typer`` turns each into one line ``calibrate: error: ...`` and exit status 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from strata.cli import Typer
from strata.errors import UserError

app = Typer("calibrate", add_completion=False, no_args_is_help=True, help=__doc__)


@app.command("import-published")
def import_published(
    store: str = typer.Option(..., "--store", help="results store (SQLite) to create or add to"),
    folder: str | None = typer.Option(None, "--dir", help="folder of published CSVs (default: the shipped copy)"),
    tier_map: str | None = typer.Option(None, "--tier-map", help="task -> tier map YAML (default: the project's)"),
) -> None:
    """Import published PTQ measurements (CSV) into a results store; rows already stored are left as they are."""
    from pathlib import Path

    from calibrate.published import published_csvs, read_published_csv
    from calibrate.store import Store
    from strata.tiermap import load_tier_map

    shipped = Path(__file__).parent / "data" / "published"
    tmap = load_tier_map(tier_map)
    files = published_csvs(folder or shipped)
    rows = {f.name: list(read_published_csv(f, tmap)) for f in files}  # validate all before writing any
    with Store.open(store) as db:
        for name, batch in rows.items():
            typer.echo(f"{name}: {db.add(batch)} new of {len(batch)} rows", err=True)
        typer.echo(f"{store}: {db.count()} rows", err=True)


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
    datasets: str | None = typer.Option(
        None,
        "--datasets",
        help="local dataset mirror (calibrate datasets pack; default: $STRATA_DATASETS, else the Hub)",
    ),
    max_length: int | None = typer.Option(
        None, "--max-length", help="context tokens lm-eval may use (default: the model's max_position_embeddings)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Evaluate one model on every task of a tier map (lm-eval), per task and per tier."""
    import json
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars would bury the one-line answer
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {device}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"--dtype must be float32, bfloat16 or float16, got {dtype}")

    from calibrate.evaluate import EvaluationFailed, Evaluator
    from calibrate.sweep import UnitError

    task_list = [t for t in tasks.split(",") if t.strip()] if tasks else None
    ev = Evaluator(
        model,
        tier_map,
        tasks=task_list,
        device=device,
        batch_size=batch_size,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        datasets=datasets,
        max_length=max_length,
    )
    config = None
    if rtn_bits is not None:
        from calibrate.rtn import apply_rtn

        apply_rtn(ev.model, rtn_bits, rtn_group_size)  # an RtnError (bad bits or group size) is a UserError
        config = {"bits": rtn_bits, "group_size": rtn_group_size, "calib_samples": None, "method": "rtn"}
    try:
        result = ev.evaluate(limit=limit, seed=seed, config=config)
    except EvaluationFailed as exc:  # a library failed: one line naming the model, the stage and the task (exit 1)
        raise UnitError(model, "evaluate", exc, exc.task) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['model']}  ({result['evaluation']['seconds']:.1f} s)")
    for name, t in result["tasks"].items():
        measured = t["metric"] + ("" if t["filter"] == "none" else f",{t['filter']}") + f" {t['n_shot']}-shot"
        typer.echo(f"  {name:<28} {t['mean']:.3f} ± {t['stderr']:.3f}  ({t['correct']}/{t['n']})  {measured}")
    for tier, t in result["tiers"].items():
        typer.echo(f"  {tier}  chance-adjusted {t['mean']:.3f}  [{t['lo']:.3f}, {t['hi']:.3f}]  n={t['n']}")


datasets_app = Typer("calibrate", add_completion=False, no_args_is_help=True, help="Local dataset mirrors.")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("pack")
def datasets_pack(
    out: str = typer.Option(..., "--out", help="mirror folder to write (added to one already there)"),
    tier_map: str | None = typer.Option(None, "--tier-map", help="tier map YAML (default: the project's)"),
    tasks: str | None = typer.Option(None, "--tasks", help="comma-separated subset of the tier map's tasks"),
    source: str | None = typer.Option(
        None,
        "--from",
        help="local copy laid out <dataset_path>/<name>/ (save_to_disk, or <split>.parquet|jsonl); "
        "default: the Hub, or the HF datasets cache with HF_DATASETS_OFFLINE=1",
    ),
) -> None:
    """Write the datasets of a tier map's lm-eval tasks as local files + manifest.json, for nodes without the Hub
    (then STRATA_DATASETS=DIR, or calibrate evaluate --datasets DIR)."""
    from pathlib import Path

    from calibrate.datasets import pack
    from calibrate.evaluate import EvaluateError, leaf_configs, task_manager
    from strata.tiermap import load_tier_map

    path = Path(tier_map) if tier_map else None
    tmap = load_tier_map(path)
    keys = list(tmap.tasks)
    if tasks:
        keys = []
        for name in (t for t in tasks.split(",") if t.strip()):
            key = tmap.resolve(name)
            if key is None:
                raise EvaluateError(f"task {name!r} is not in the tier map")
            keys.append(key)
    lm_names = {tmap.tasks[k].lm_eval_task or k: k for k in keys}
    include = (path.parent / tmap.include_path).resolve() if path is not None and tmap.include_path else None
    tm = task_manager(include, lm_names, {}, None)
    configs: dict[str, dict] = {}
    for name, key in lm_names.items():
        leaves = leaf_configs(tm, name)
        wanted = tmap.tasks[key].subtasks
        configs.update({t: c for t, c in leaves.items() if wanted is None or t in wanted})
    manifest = pack(configs, out, source, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{out}: {len(manifest['datasets'])} dataset(s) for {len(configs)} lm-eval task(s)", err=True)


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
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from calibrate.executors import ExecutorOptions, make_executor
    from calibrate.progress import SweepDisplay
    from calibrate.spec import load_spec
    from calibrate.sweep import UnitsFailed, run_sweep, status

    display = SweepDisplay(quiet)
    options = ExecutorOptions(
        address=address,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        max_retries=max_retries,
        partition=partition,
        slurm_folder=slurm_folder,
        timeout_min=timeout_min,
        slurm_local=slurm_local,
        log=display.stage,
        events=display.event,
    )
    runner = make_executor(executor, options)  # a bad name, option or missing library stops before any work
    spec = load_spec(spec_path)
    if dry_run:
        for line in status(spec, store):
            typer.echo(f"{line['model']}: {line['left']} of {line['planned']} configurations to run")
        return
    _stop_on_sigterm()
    try:
        with display.bar:
            result = run_sweep(
                spec,
                store_path=store,
                executor=runner,
                on_config=display.on_config,
                log=display.stage,
                on_start=display.on_start,
            )
    except KeyboardInterrupt:
        display.print(
            f"interrupted: {display.ran} configuration(s) committed this run; rerun the same command to resume"
        )
        raise typer.Exit(code=130) from None
    except UnitsFailed as exc:
        display.print(f"{display.ran} configuration(s) committed this run; {len(exc.failures)} unit(s) failed:")
        for f in exc.failures:
            typer.echo(f.describe(), err=True)
        typer.echo("rerun the same command to retry them; what is stored is not recomputed", err=True)
        raise typer.Exit(code=1) from None
    display.print(
        f"{result.store}: {result.ran} configuration(s) run, {result.already_stored} already stored, "
        f"{result.planned} planned, {result.rows_added} rows added, {result.seconds:.1f} s"
    )


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's pre-emption) stops like Ctrl-C: what is committed stays, the rest resumes later."""
    import signal

    def _term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)


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

    from calibrate.spec import load_spec
    from calibrate.store import Store
    from calibrate.sweep import status

    if Path(path).suffix in (".yaml", ".yml"):
        spec = load_spec(path)
        lines = status(spec, store)
        title = f"{spec.name}: {store or spec.store}"
    else:
        with Store.open(path, create=False) as db:
            lines = db.summary()
        title = path
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
    from calibrate.store import Store

    path = store_arg or store
    if path is None:
        raise UserError("name the store: calibrate export STORE --csv FILE")
    with Store.open(path, create=False) as db:
        rows = list(db.rows(source=source or None, model=model or None))
    if csv_path == "-":
        write_csv(rows, sys.stdout)
        return
    try:
        with open(csv_path, "w", newline="") as out:
            n = write_csv(rows, out)
    except OSError as exc:
        raise UserError(f"cannot write {csv_path} ({exc.strerror}); pass a writable --csv path") from None
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

    from calibrate.deploy import DeployError, check_arguments, quantize_checkpoint
    from calibrate.spec import CalibrationSpec, GptqSpec

    # The flags' own messages first: the spec objects' validation would name their fields, not the flags.
    check_arguments(bits, group_size, calib_samples, seqlen, damp, device)
    if not calib_file and not dataset:
        raise DeployError("no calibration text: pass --calib-file FILE (repeatable) or --dataset ID")
    calibration = CalibrationSpec(
        files=calib_file or None,
        dataset=None if calib_file else dataset,  # with both flags the files are the text; the dataset is not read
        name=dataset_name,
        split=split,
        text_field=text_field,
        seqlen=seqlen,
        seeds=[seed],
    )
    summary = quantize_checkpoint(
        model,
        out,
        bits=bits,
        group_size=group_size,
        calib_samples=calib_samples,
        calibration=calibration,
        gptq=GptqSpec(sym=sym, act_order=act_order, damp=damp),
        device=device,
        trust_remote_code=trust_remote_code,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


@app.command()
def verify(
    answer: str = typer.Argument(
        ..., metavar="ANSWER", help="advisor recommend --json output, or a configuration file"
    ),
    model: str | None = typer.Option(None, "--model", help="local model folder (when the answer names a catalog id)"),
    seeds: int = typer.Option(1, "--seeds", help="calibration seeds to quantize with (>= 2: the seed-to-seed spread)"),
    seed: int = typer.Option(0, "--seed", help="the first calibration seed"),
    spec: str | None = typer.Option(
        None, "--spec", help="sweep spec whose protocol to measure with (calibration, GPTQ, evaluation, store)"
    ),
    store: str | None = typer.Option(
        None, "--store", help="results store (default: the spec's, else ./strata-verify.sqlite)"
    ),
    tier_map: str | None = typer.Option(
        None, "--tier-map", help="tier map (default: the spec's, the checkpoint's own, else the project's)"
    ),
    calib_file: Annotated[list[str] | None, typer.Option("--calib-file", help="calibration text (repeatable)")] = None,
    dataset: str | None = typer.Option(
        None, "--dataset", help="Hugging Face calibration dataset (default: WikiText-2)"
    ),
    dataset_name: str | None = typer.Option(None, "--dataset-name"),
    seqlen: int | None = typer.Option(
        None, "--seqlen", help="tokens per calibration sample (default: the spec's, 2048)"
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="items per task, a seeded random subset (default: the spec's, all)"
    ),
    family: str | None = typer.Option(
        None, "--family", help="model family in the store (default: the spec's, config.model_type)"
    ),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda | auto (default: the spec's, cpu)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Quantize a model with an advisor answer's configuration, evaluate it, and report measured against predicted
    per tier; exit 0 when every target is met, 3 when one is not (the advisor's "not met" code)."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from rich.console import Console

    from calibrate.progress import SweepDisplay
    from calibrate.verify import Options, render
    from calibrate.verify import verify as run_verify

    opts = Options(model=model, spec=spec, store=store, tier_map=tier_map, calib_files=calib_file or [],
                   dataset=dataset, dataset_name=dataset_name, seqlen=seqlen, limit=limit, seeds=seeds, seed=seed,
                   family=family, device=device)  # fmt: skip
    display = SweepDisplay(quiet)
    try:
        with display.bar:
            report = run_verify(answer, opts, display)
    except KeyboardInterrupt:
        display.print("interrupted: rerun the same command; seeds already stored are not recomputed")
        raise typer.Exit(code=130) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        render(report, Console(width=max(Console().width, 120)))
    raise typer.Exit(code=report.exit_code)


def main() -> None:
    from strata.errors import guard

    guard("calibrate", lambda: app(prog_name="calibrate"))


if __name__ == "__main__":
    main()
