"""`advisor frontier --plot`: the frontier as a PNG, one panel per tier (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

from advisor.schema import Frontier
from strata.errors import UserError


def plot_frontier(front: Frontier, path: str | Path) -> Path:
    """Predicted mean and 90% interval of each tier against memory, targets drawn; returns the PNG's path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError('--plot needs matplotlib: pip install "strata[fit]" (or pip install matplotlib)') from None
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"--plot {path}: folder {path.parent} does not exist")
    tiers = list(front.points[0].tiers) if front.points else []
    fig, axes = plt.subplots(1, max(len(tiers), 1), figsize=(5 * max(len(tiers), 1), 4), squeeze=False)
    billed = front.deployment.context is not None
    for ax, t in zip(axes[0], tiers, strict=False):
        x = [p.memory.total_gb if p.memory else p.memory_gb for p in front.points]
        est = [p.tiers[t] for p in front.points]
        y = [e.mean for e in est]
        lo = [e.mean - e.lo if e.lo is not None else 0.0 for e in est]
        hi = [e.hi - e.mean if e.hi is not None else 0.0 for e in est]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", capsize=3, label="frontier (90% interval)")
        for p, xi, yi in zip(front.points, x, y, strict=True):
            g = "pc" if p.config.group_size == -1 else p.config.group_size
            ax.annotate(f"{p.config.bits:g}b g{g} c{p.config.calib_samples}", (xi, yi), fontsize=6)
        if t in front.targets:
            ax.axhline(front.targets[t], color="red", ls="--", lw=1, label=f"target {front.targets[t]:.3f}")
        ax.set(xlabel=f"memory, GB ({'whole bill' if billed else 'weights'})", ylabel=f"{t} chance-adjusted",
               title=f"{front.model.name}: {t} ({', '.join(front.points[0].tiers[t].tasks)})")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
