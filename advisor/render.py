"""Human-readable answers: rich tables for a recommendation or a prediction."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from advisor.schema import Candidate, Interval, Prediction, Recommendation


def _iv(x: Interval) -> str:
    return f"{x.mean:.3f}" + (f" [{x.lo:.3f}, {x.hi:.3f}]" if x.lo is not None and x.hi is not None else "")


def _g(g: int) -> str:
    return "per-channel" if g == -1 else str(g)


def _candidates_table(title: str, rows: list[tuple[str, Candidate]], tiers: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("", "bits", "group", "calib", "weights GB", "vs BF16"):
        table.add_column(col, justify="right" if col else "left")
    for t in tiers:
        table.add_column(f"{t} mean [90%]", justify="right")
    table.add_column("P(all)", justify="right")
    table.add_column("extrapolates")  # factor names only: the sentences are printed under the table
    for label, c in rows:
        table.add_row(
            label,
            f"{c.config.bits:g}",
            _g(c.config.group_size),
            str(c.config.calib_samples),
            f"{c.memory_gb:.2f}",
            f"{c.compression:.2f}x",
            *[_iv(c.tiers[t]) for t in tiers],
            "-" if c.prob_all is None else f"{c.prob_all:.2f}",
            ",".join(e.split()[0] for e in c.extrapolates) or "no",
        )
    return table


def show(answer: Recommendation | Prediction, console: Console | None = None) -> None:
    console = console or Console()
    m = answer.model
    head = f"[bold]{m.name}[/] ({m.family}, {m.params_b:g}B{', architecture approximate' if m.approximate else ''})"
    head += f" · profile [bold]{answer.profile.name}[/] ({answer.profile.engine})"
    console.print(head)
    if isinstance(answer, Prediction):
        c = answer.config
        console.print(
            f"{c.method} {c.bits:g}-bit, group {_g(c.group_size)}, Cb {c.calib_samples}: {answer.memory_gb:.2f} GB"
        )
        table = Table(title="tiers (chance-adjusted)", title_justify="left")
        table.add_column("tier")
        table.add_column("mean [90%]", justify="right")
        table.add_column("tasks")
        for t, iv in answer.tiers.items():
            table.add_row(t, _iv(iv), ", ".join(iv.tasks))
        console.print(table)
        if answer.tasks:
            tasks = Table(title="tasks (raw accuracy)", title_justify="left")
            for col in ("task", "tier", "chance", "mean [90%]"):
                tasks.add_column(col)
            for name, ta in answer.tasks.items():
                tasks.add_row(name, ta.tier or "-", f"{ta.chance:g}", _iv(ta))
            console.print(tasks)
        if answer.extrapolates:
            console.print(f"[yellow]extrapolates:[/] {'; '.join(answer.extrapolates)}")
        return
    scale = "relative to unquantized" if answer.scale == "relative" else "chance-adjusted"
    targets = ", ".join(f"{t} >= {v:g}" for t, v in answer.targets.items())
    conf = f", P >= {answer.confidence:g}" if answer.confidence is not None else ", on means"
    budget = f", weights <= {answer.memory_budget_gb:g} GB" if answer.memory_budget_gb is not None else ""
    console.print(f"targets ({scale}): {targets}{conf}{budget} · BF16 weights {answer.bf16_gb:.2f} GB")
    tiers = list(answer.targets)
    shown = answer.recommendation or answer.closest
    if shown is not None:
        named = "; ".join(f"{t} = {', '.join(shown.tiers[t].tasks)}" for t in tiers if shown.tiers[t].tasks)
        if named:
            console.print(f"tiers: {named}")
    if answer.recommendation is not None:
        rows = [("best", answer.recommendation)] + [(f"alt {i + 1}", a) for i, a in enumerate(answer.alternatives)]
        console.print(_candidates_table(f"cheapest of {answer.searched} configurations", rows, tiers))
        for line in answer.recommendation.extrapolates:
            console.print(f"[yellow]best extrapolates:[/] {line}")
    else:
        assert answer.closest is not None
        short = ", ".join(f"{t} short by {v:.3f}" for t, v in answer.shortfall.items())
        console.print(f"[red]no configuration meets the targets[/] ({short})")
        for t in tiers:
            best = answer.best_reachable.get(t)
            unq = answer.unquantized.get(t)
            parts = [f"best any configuration reaches {best:.3f}" if best is not None else "",
                     f"unquantized {_iv(unq)}" if unq is not None else ""]  # fmt: skip
            if any(parts):
                console.print(f"  {t}: " + ", ".join(p for p in parts if p))
        console.print(_candidates_table("closest configuration", [("closest", answer.closest)], tiers))
        for line in answer.closest.extrapolates:
            console.print(f"[yellow]closest extrapolates:[/] {line}")
    for line in answer.excluded:
        console.print(f"[dim]excluded: {line}[/]")
