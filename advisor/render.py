"""Human-readable answers: rich tables for a recommendation or a prediction."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from advisor.schema import Candidate, Frontier, Interval, Prediction, Recommendation


def _iv(x: Interval) -> str:
    return f"{x.mean:.3f}" + (f" [{x.lo:.3f}, {x.hi:.3f}]" if x.lo is not None and x.hi is not None else "")


def _g(g: int) -> str:
    return "per-channel" if g == -1 else str(g)


def _candidates_table(title: str, rows: list[tuple[str, Candidate]], tiers: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    billed = any(c.memory is not None for _, c in rows)
    kernels = any(c.kernel is not None for _, c in rows)
    cols = ["", "bits", "group", "calib", "weights GB", *(["total GB"] if billed else []), "vs BF16"]
    for col in [*cols, *(["kernel"] if kernels else [])]:
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
            *([f"{c.memory.total_gb:.2f}" if c.memory else "-"] if billed else []),
            f"{c.compression:.2f}x",
            *([c.kernel or "-"] if kernels else []),
            *[_iv(c.tiers[t]) for t in tiers],
            "-" if c.prob_all is None else f"{c.prob_all:.2f}",
            ",".join(e.split()[0] for e in c.extrapolates) or "no",
        )
    return table


def _bill(c: Candidate | Prediction, console: Console) -> None:
    if c.memory is not None:
        b = c.memory
        console.print(
            f"memory bill: weights {b.weights_gb:.2f} + KV cache {b.kv_cache_gb:.2f} + runtime {b.runtime_gb:.2f}"
            f" = {b.total_gb:.2f} GB [dim](runtime: {b.runtime_source})[/]"
        )


def shortfall_text(answer: Recommendation) -> str:
    """Why nothing qualifies: tiers whose mean falls short, or (means clear) the probability that falls short."""
    parts = [f"{t} {'short by' if v > 0 else 'mean clears by'} {abs(v):.3f}" for t, v in answer.shortfall.items()]
    c = answer.closest
    if c is not None and c.prob_all is not None and answer.confidence is not None and c.prob_all < answer.confidence:
        parts.append(f"P(all) {c.prob_all:.2f} < {answer.confidence:g}")
    return ", ".join(parts)


def _baseline(answer: Recommendation | Prediction, console: Console) -> None:
    b = answer.baseline
    if b is None:
        console.print("[dim]baseline: none (the law alone; give --baseline FILE with the model's 16-bit scores)[/]")
        return
    tiers = ", ".join(b.conditioned) or "no tier"
    console.print(f"baseline: {b.source} · conditions {tiers}")
    for tier, tasks in b.law_only.items():
        if tasks:
            console.print(f"[yellow]{tier}: not in the baseline, from their laws alone:[/] {', '.join(tasks)}")
    for tier, why in b.not_conditioned.items():
        console.print(f"[yellow]{tier} from the law alone:[/] {why}")
    if b.unused:
        console.print(f"[dim]unused baseline tasks: {'; '.join(b.unused)}[/]")


def show(answer: Recommendation | Prediction | Frontier, console: Console | None = None) -> None:
    console = console or Console()
    m = answer.model
    head = f"[bold]{m.name}[/] ({m.family}, {m.params_b:g}B{', architecture approximate' if m.approximate else ''})"
    head += f" · profile [bold]{answer.profile.name}[/] ({answer.profile.engine})"
    console.print(head)
    if isinstance(answer, Frontier):
        tiers = list(answer.points[0].tiers) if answer.points else []
        rows = [(f"{i + 1}", p) for i, p in enumerate(answer.points)]
        console.print(_candidates_table(f"frontier: {len(rows)} of {answer.searched} configurations", rows, tiers))
        for line in answer.excluded:
            console.print(f"[dim]excluded: {line}[/]")
        return
    if isinstance(answer, Prediction):
        c = answer.config
        kernel = f" · {answer.deployment.engine}: {answer.kernel} kernel" if answer.kernel else ""
        console.print(
            f"{c.method} {c.bits:g}-bit, group {_g(c.group_size)}, Cb {c.calib_samples}: {answer.memory_gb:.2f} GB"
            + kernel
        )
        _bill(answer, console)
        _baseline(answer, console)
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
    what = "weights" if answer.deployment.context is None else "weights + KV cache + runtime"
    budget = f", {what} <= {answer.memory_budget_gb:g} GB" if answer.memory_budget_gb is not None else ""
    d = answer.deployment
    if d.context is not None or d.engine != "any":
        ctx = f", {d.batch} x {d.context} tokens, KV {d.kv_dtype}" if d.context is not None else ""
        budget += f" · engine {d.engine}{ctx}"
    console.print(f"targets ({scale}): {targets}{conf}{budget} · BF16 weights {answer.bf16_gb:.2f} GB")
    _baseline(answer, console)
    tiers = list(answer.targets)
    shown = answer.recommendation or answer.closest
    if shown is not None:
        named = "; ".join(f"{t} = {', '.join(shown.tiers[t].tasks)}" for t in tiers if shown.tiers[t].tasks)
        if named:
            console.print(f"tiers: {named}")
    if answer.recommendation is not None:
        rows = [("best", answer.recommendation)] + [(f"alt {i + 1}", a) for i, a in enumerate(answer.alternatives)]
        console.print(_candidates_table(f"cheapest of {answer.searched} configurations", rows, tiers))
        _bill(answer.recommendation, console)
        for line in answer.recommendation.extrapolates:
            console.print(f"[yellow]best extrapolates:[/] {line}")
        if answer.next_cheaper is not None:
            n = answer.next_cheaper
            c = n.candidate.config
            short = ", ".join(f"{t} {'short by' if v > 0 else 'clear by'} {abs(v):.3f}" for t, v in n.shortfall.items())
            console.print(
                f"next cheaper: {c.bits:g}-bit G={_g(c.group_size)} Cb={c.calib_samples} "
                f"({n.candidate.memory.total_gb if n.candidate.memory else n.candidate.memory_gb:.2f} GB): {short}"
                f"{'' if n.candidate.prob_all is None else f', P(all) {n.candidate.prob_all:.2f}'}"
            )
    else:
        assert answer.closest is not None
        short = shortfall_text(answer)
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
