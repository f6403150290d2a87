"""`fit`: fit the stratified scaling laws to stored measurements and write profiles.

fit run --preset qwen3-base --out profiles/qwen3-base.json   # regenerate a shipped profile from published data
fit run --family Qwen3 --store results.sqlite --out p.json    # a profile from your own sweep results
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strata.cli import Typer
from strata.errors import UserError
from strata.profile import NutsSettings, SviSettings

if TYPE_CHECKING:
    from fit.profiles import Rows

NUTS, SVI = NutsSettings(), SviSettings()  # the flags' defaults: the settings' own
app = Typer("fit", add_completion=False, no_args_is_help=True, help=__doc__)  # its commands end in one line


@app.callback()
def _root() -> None:
    """Fit laws and write profiles."""


@app.command()
def run(
    out: Annotated[Path, typer.Option(help="where to write the profile JSON")],
    preset: Annotated[str | None, typer.Option(help="a shipped profile's name: qwen3, qwen3-base, llama")] = None,
    name: Annotated[
        str | None, typer.Option(help="profile name (default: the preset's, or the output file's stem)")
    ] = None,
    family: Annotated[list[str] | None, typer.Option(help="model family to fit (repeatable), e.g. Qwen3")] = None,
    stage: Annotated[
        list[str] | None, typer.Option(help="model stage to keep (repeatable): base, post-trained")
    ] = None,
    method: Annotated[
        str, typer.Option(help="quantization method fitted: GPTQ (others make separate profiles)")
    ] = "GPTQ",
    store: Annotated[
        Path | None, typer.Option(help="results store (SQLite) to read; default: published data only")
    ] = None,
    published: Annotated[
        Path | None, typer.Option(help="folder of published CSVs to import first (default: the copy strata ships)")
    ] = None,
    no_published: Annotated[bool, typer.Option("--no-published", help="read the store only")] = False,
    tier_map: Annotated[Path | None, typer.Option(help="task -> tier map YAML (default: strata's)")] = None,
    include_suspect: Annotated[bool, typer.Option(help="also fit rows flagged SUSPECT in their source")] = False,
    engine: Annotated[
        str, typer.Option(help="ols (the paper's procedure), nuts (Bayesian, default inference), svi (fast path)")
    ] = "ols",
    joint: Annotated[
        list[str] | None, typer.Option(help="nuts/svi: also fit this preset's family, sharing the prior (repeatable)")
    ] = None,
    warmup: Annotated[int, typer.Option(help="NUTS warmup steps per chain")] = NUTS.warmup,
    samples: Annotated[int, typer.Option(help="NUTS draws per chain")] = NUTS.samples,
    chains: Annotated[int, typer.Option(help="NUTS chains")] = NUTS.chains,
    svi_steps: Annotated[int, typer.Option(help="SVI optimizer steps")] = SVI.steps,
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance probability")] = NUTS.target_accept,
    seed: Annotated[int, typer.Option(help="random seed of the inference")] = NUTS.seed,
    likelihood: Annotated[str, typer.Option(help="beta_binomial or binomial")] = NUTS.likelihood,
    force: Annotated[bool, typer.Option(help="write the profile even if R-hat/ESS/divergences fail (marked)")] = False,
) -> None:
    """Fit a profile and write it as JSON."""
    from fit.pipeline import fit_profile, settings_from_flags

    flags = dict(warmup=warmup, samples=samples, chains=chains, steps=svi_steps, target_accept=target_accept,
                 seed=seed, likelihood=likelihood)  # fmt: skip
    profile = fit_profile(
        preset=preset,
        name=name or (None if preset else out.stem),
        families=family or [],
        stages=stage or [],
        method=method,
        store=store,
        published=None if no_published else (published or "shipped"),
        tier_map=tier_map,
        include_suspect=include_suspect,
        engine=engine,
        command=" ".join(["fit", *map(shlex.quote, sys.argv[1:])]),
        settings=settings_from_flags(engine, flags),
        joint=tuple(joint or ()),
        force=force,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profile.model_dump_json(indent=1, exclude_none=True) + "\n")
    fits = ", ".join(f"{t} adj R² {law.adj_r2:.3f}" for t, law in profile.tiers.items() if law.adj_r2 is not None)
    ppc = profile.diagnostics.ppc_coverage if profile.diagnostics else None
    check = f"; observed counts inside their 90% predictive interval: {ppc['all']:.2f}" if ppc else ""
    typer.echo(f"wrote {out}: {profile.data.n_rows} rows, {fits}{check}", err=True)


# Where `fit validate` and `fit report` read their data: a preset's, or named families' from a store.
PresetOpt = Annotated[
    str | None, typer.Option(help="preset whose data is used: qwen3, qwen3-base, llama (default: qwen3)")
]
FamilyOpt = Annotated[list[str] | None, typer.Option(help="instead: this model family's rows (repeatable)")]
StoreOpt = Annotated[Path | None, typer.Option(help="results store (SQLite) to read as well as the published data")]
NoPublishedOpt = Annotated[bool, typer.Option("--no-published", help="read the store only")]


def _quantized(preset: str | None, family: list[str] | None, store: Path | None, no_published: bool) -> Rows:
    from fit.pipeline import gather, spec_of

    spec = spec_of(preset if preset or family else "qwen3", family or [])
    quant = gather(spec, store=store, published=None if no_published else "shipped")[0]
    if not quant.rows:
        raise UserError(
            f"no {spec.method} rows of {', '.join(spec.families)} in the data read; check --family (the model_family "
            "column of `calibrate export`) and --store"
        )
    return quant


@app.command()
def validate(
    preset: PresetOpt = None,
    family: FamilyOpt = None,
    store: StoreOpt = None,
    no_published: NoPublishedOpt = False,
    random_share: Annotated[
        float, typer.Option(help="also hold out this random share of configurations (0: no such split)")
    ] = 0.2,
    split_seed: Annotated[int, typer.Option(help="seed of the random split")] = 0,
    across: Annotated[
        str | None, typer.Option(help="also fit this preset and predict the other family's data, e.g. llama")
    ] = None,
    markdown: Annotated[Path | None, typer.Option(help="also write the table as markdown here")] = None,
    engine: Annotated[str, typer.Option(help="also score the Bayesian model: nuts, svi, or none")] = "nuts",
    warmup: Annotated[int, typer.Option(help="NUTS warmup steps per chain")] = 500,
    samples: Annotated[int, typer.Option(help="NUTS draws per chain")] = 500,
    heldout: Annotated[
        bool,
        typer.Option(
            "--heldout",
            help="instead: every published GPTQ row predicted as `advisor predict` does, leaving out its model "
            "(OLS refits) and its family (OLS, and NUTS unless --engine none), with and without the FP16 baseline",
        ),
    ] = False,
    by_config: Annotated[
        bool, typer.Option("--by-config", help="with --heldout: also each family's rows by (B, G), with the baseline")
    ] = False,
) -> None:
    """Held-out validation: MAE and 90% coverage of each method on the largest model (and across families)."""
    from rich.console import Console
    from rich.table import Table

    if heldout:
        from fit.heldout import breakdown_markdown, heldout_scores
        from fit.heldout import markdown as heldout_markdown

        console = Console(stderr=True)
        found = heldout_scores("nuts" if engine == "nuts" else "ols", progress=lambda m: console.print(m))
        text = heldout_markdown(found)
        if by_config:
            text += "\n\n" + breakdown_markdown(found)
        typer.echo(text)
        if markdown:
            markdown.write_text(text + "\n")
        return

    from fit.pipeline import gather, spec_for
    from fit.validate import (
        METHODS,
        bayes_scorer,
        evaluate,
        family_split,
        largest_model_split,
        markdown_table,
        random_config_split,
    )

    methods = dict(METHODS)
    if engine == "nuts":  # shorter than a profile's fit, at NUTS's usual target acceptance
        methods["Bayesian (NUTS)"] = bayes_scorer(NutsSettings(warmup=warmup, samples=samples, target_accept=0.9))
    elif engine == "svi":
        methods["Bayesian (SVI)"] = bayes_scorer(SviSettings())
    elif engine != "none":
        raise UserError(f"unknown engine {engine!r}; use nuts, svi or none")
    if not 0 <= random_share < 1:
        raise UserError(f"--random-share {random_share:g}: give a share in [0, 1) of configurations (0: no such split)")
    quant = _quantized(preset, family, store, no_published)
    scores = evaluate(largest_model_split(quant), methods)
    if random_share > 0:
        scores += evaluate(random_config_split(quant, random_share, split_seed), methods)
    if across:
        other, _ = gather(spec_for(across))
        scores += evaluate(family_split(quant, other, f"fit {preset}, predict {across}"), methods)
    table = Table(title="held-out validation (chance-adjusted tier means)")
    for col in ("split", "tier", "method", "n", "MAE (points)", "90% coverage"):
        table.add_column(col)
    for s in scores:
        table.add_row(s.split, s.tier, s.method, str(s.n), f"{s.mae_points:.2f}", f"{s.coverage:.2f}")
    Console().print(table)
    if markdown:
        markdown.write_text(markdown_table(scores) + "\n")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="folder for the PNG figures and summary.md")],
    preset: PresetOpt = None,
    family: FamilyOpt = None,
    store: StoreOpt = None,
    no_published: NoPublishedOpt = False,
    profile: Annotated[Path | None, typer.Option(help="profile JSON (default: profiles/<preset>.json)")] = None,
    with_validation: Annotated[bool, typer.Option(help="run `fit validate` (OLS) and add its table")] = True,
) -> None:
    """Write the paper's figures with 90% bands, and a markdown summary."""
    from fit.report import write_report
    from fit.validate import METHODS, evaluate, largest_model_split, markdown_table, random_config_split
    from profiles import DIR
    from strata.profile import load_profile

    if profile is None and family:
        raise UserError("--family needs --profile: the profile fitted on that family's data")
    prof = load_profile(profile or DIR / f"{preset or 'qwen3'}.json")
    quant = _quantized(preset, family, store, no_published)
    splits = [largest_model_split(quant), random_config_split(quant)]
    table = markdown_table([s for sp in splits for s in evaluate(sp, METHODS)]) if with_validation else None
    for path in write_report(prof, quant, out, table):
        typer.echo(f"wrote {path}", err=True)


def fixed_hash_seed(argv: list[str]) -> None:
    """Re-run this process with PYTHONHASHSEED=0 unless it is set. numpyro's Trace_ELBO sums the ELBO over a set
    of site names, whose order follows Python's per-process string hashing: every process then builds a different
    program, so JAX's compilation cache never hits for SVI (bench/README.md) and SVI results are not bit-identical
    from run to run. With a fixed seed both are."""
    if "PYTHONHASHSEED" not in os.environ:
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *argv])  # argv: the interpreter's arguments to run again


def main() -> None:
    from strata.errors import guard

    fixed_hash_seed(["-m", "fit.cli", *sys.argv[1:]])
    guard("fit", lambda: app(prog_name="fit"))


if __name__ == "__main__":
    main()
