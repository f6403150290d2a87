"""`fit report`: the paper's figures from a profile and its data, with 90% bands from the profile's draws.

Figures (PNG): scaling in N per tier, scaling in B per tier, Cb and G at 3 bits, predicted vs actual (four-factor
law vs the (N, B) baseline), and the 3-bit (N, Cb) surface; plus a markdown summary with coefficients and their
intervals per tier, fit metrics, diagnostics and (when given) the validation table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fit.profiles import Obs, Rows, tier_obs
from strata.law import COEF_NAMES, TIERS, LawCoef, four_factor
from strata.profile import LawFit, Profile, law_draws

COLORS = {"KM": "tab:blue", "KA": "tab:green", "KR": "tab:red"}


def band(law: LawFit, n: object, b: object, g: object, c: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 90% credible band of the law itself over a 1-D sweep of one factor (others broadcast).

    The band of the law, not of a model's accuracy: no model deviation (omega) is added, because the points drawn
    beside it are the fitted models, whose own deviations the fit has estimated. ``advisor predict`` adds it.
    """
    d = np.atleast_2d(law_draws(law, n, b, g, c))
    return d.mean(0), np.quantile(d, 0.05, axis=0), np.quantile(d, 0.95, axis=0)


def reference(profile: Profile) -> tuple[float, float]:
    """The (G, Cb) the figures hold fixed: 128 where the data has it (the published tables' usual setting), else
    the upper middle of the data's finite group sizes and of its Cb values, so the plotted points exist."""

    def pick(values: list[int]) -> float:
        vals = sorted(v for v in values if v > 0)
        return 128.0 if 128 in vals or not vals else float(vals[len(vals) // 2])

    return pick(profile.data.group_sizes), pick(profile.data.calib_samples)


def _grid(values: list[int], lo: float, hi: float) -> np.ndarray:
    """A log grid over the data's finite values of a factor, a little beyond them (``lo``..``hi`` without data)."""
    vals = [v for v in values if v > 0]
    return np.geomspace(min(vals) / 2, max(vals) * 4, 40) if vals else np.geomspace(lo, hi, 40)


def params_label(n: float) -> str:
    """Parameters for a legend: 27k, 394k, 1.5M, 8B."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scaling_n(profile: Profile, data: Rows, out: Path, bits: float = 4) -> Path:
    plt = _plt()
    group, calib = reference(profile)
    fig, ax = plt.subplots(figsize=(6, 4))
    lo, hi = profile.data.params_b
    ns = np.geomspace(lo * 0.5e9, hi * 3e9, 60)
    for t, law in profile.tiers.items():
        m, a, b = band(law, ns[None, :], bits, group, calib)
        ax.plot(ns, m, color=COLORS[t], label=f"{t} law")
        ax.fill_between(ns, a, b, color=COLORS[t], alpha=0.2)
        obs = tier_obs(data, t)
        sel = (obs.bits == bits) & (obs.calib == calib) & (obs.group == group)
        ax.scatter(obs.params[sel], obs.y_adj[sel], color=COLORS[t], s=18, label=f"{t} data")
    ax.set(xscale="log", xlabel="parameters N", ylabel="chance-adjusted accuracy",
           title=f"{profile.name}: scaling in N at {bits:g}-bit, G={group:g}, Cb={calib:g}")  # fmt: skip
    ax.legend(fontsize=7)
    return _save(fig, out / "scaling_n.png")


def plot_scaling_b(profile: Profile, data: Rows, out: Path) -> Path:
    plt = _plt()
    group, calib = reference(profile)
    tiers = list(profile.tiers)
    fig, axes = plt.subplots(1, len(tiers), figsize=(5 * len(tiers), 4), squeeze=False)
    bs = np.linspace(2.5, 8.5, 50)
    for ax, t in zip(axes[0], tiers, strict=True):
        obs = tier_obs(data, t)
        for n in sorted(set(obs.params)):
            m, a, b = band(profile.tiers[t], n, bs[None, :], group, calib)
            line = ax.plot(bs, m, label=params_label(n))[0]
            ax.fill_between(bs, a, b, color=line.get_color(), alpha=0.15)
            sel = (obs.params == n) & (obs.group == group) & (obs.calib == calib)
            ax.scatter(obs.bits[sel], obs.y_adj[sel], color=line.get_color(), s=15)
        title = f"{t}: scaling in B (G={group:g}, Cb={calib:g})"
        ax.set(xlabel="bits B", ylabel="chance-adjusted accuracy", title=title)
        ax.legend(fontsize=7)
    return _save(fig, out / "scaling_b.png")


def plot_cb_g_at_3bit(profile: Profile, out: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    n = np.sqrt(profile.data.params_b[0] * profile.data.params_b[1]) * 1e9
    group, calib = reference(profile)
    cbs, gs = _grid(profile.data.calib_samples, 8, 1024), _grid(profile.data.group_sizes, 32, 1024)
    for t, law in profile.tiers.items():
        m, lo, hi = band(law, n, 3, group, cbs[None, :])
        a1.plot(cbs, m, color=COLORS[t], label=t)
        a1.fill_between(cbs, lo, hi, color=COLORS[t], alpha=0.2)
        m, lo, hi = band(law, n, 3, gs[None, :], calib)
        a2.plot(gs, m, color=COLORS[t], label=t)
        a2.fill_between(gs, lo, hi, color=COLORS[t], alpha=0.2)
    a1.set(xscale="log", xlabel="calibration samples Cb", ylabel="chance-adjusted accuracy",
           title=f"Cb at 3-bit, G={group:g}, N={params_label(n)}")  # fmt: skip
    a2.set(xscale="log", xlabel="group size G", title=f"G at 3-bit, Cb={calib:g}, N={params_label(n)}")
    a1.legend(fontsize=7)
    return _save(fig, out / "cb_g_3bit.png")


def plot_predicted_vs_actual(profile: Profile, data: Rows, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for t in profile.tiers:
        obs = tier_obs(data, t)
        for law, marker, name in ((profile.tiers[t], "o", "four-factor"), (profile.baseline.get(t), "x", "(N, B)")):
            if law is None:
                continue
            pred = _point(law, obs)
            ax.scatter(obs.y_adj, pred, marker=marker, color=COLORS[t], s=18, label=f"{t} {name}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set(xlabel="measured", ylabel="predicted", title=f"{profile.name}: predicted vs measured (adjusted)")
    ax.legend(fontsize=7)
    return _save(fig, out / "predicted_vs_actual.png")


def plot_surface_3bit(profile: Profile, out: Path, tier: str | None = None) -> Path:
    plt = _plt()
    tier = tier or next(iter(profile.tiers))
    ns = np.geomspace(profile.data.params_b[0] * 1e9, profile.data.params_b[1] * 1e9, 40)
    group, _ = reference(profile)
    cbs = _grid(profile.data.calib_samples, 8, 1024)
    coef = LawCoef(**profile.tiers[tier].coef.model_dump())
    grid = np.asarray(four_factor(coef, ns[:, None], 3, group, cbs[None, :]))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    mesh = ax.pcolormesh(cbs, ns, grid, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="chance-adjusted accuracy")
    ax.set(xscale="log", yscale="log", xlabel="calibration samples Cb", ylabel="parameters N",
           title=f"{profile.name} {tier}: 3-bit surface (G={group:g})")  # fmt: skip
    return _save(fig, out / "surface_3bit.png")


def _point(law: LawFit, obs: Obs) -> np.ndarray:
    return np.asarray(four_factor(LawCoef(**law.coef.model_dump()), obs.params, obs.bits, obs.group, obs.calib))


def _save(fig: object, path: Path) -> Path:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    _plt().close(fig)
    return path


def summary_markdown(profile: Profile, validation: str | None = None, diagnostics: str | None = None) -> str:
    lines = [f"# strata profile `{profile.name}` ({profile.engine})", "", profile.description, "",
             f"Regenerate: `{profile.command}`", "", "## Coefficients (mean [90% interval])", "",
             "| law | " + " | ".join(COEF_NAMES) + " | adj R² | MAE (adj) | rows |",
             "|---|" + "---|" * (len(COEF_NAMES) + 3)]  # fmt: skip
    laws = {**{f"tier {t}": law for t, law in profile.tiers.items()}, "general": profile.general}
    for name, law in laws.items():
        cells = []
        for k in COEF_NAMES:
            if k in law.fixed:
                cells.append(f"{law.fixed[k]:g} (fixed)")
            elif law.draws:
                x = np.asarray(law.draws[k])
                cells.append(f"{x.mean():.3g} [{np.quantile(x, 0.05):.3g}, {np.quantile(x, 0.95):.3g}]")
            else:
                cells.append(f"{getattr(law.coef, k):.3g}")
        r2 = "-" if law.adj_r2 is None else f"{law.adj_r2:.3f}"
        mae = "-" if law.mae_adj is None else f"{law.mae_adj:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r2} | {mae} | {law.n_rows} |")
    d = profile.data
    lines += ["", "## Data", "", f"- models: {', '.join(f'{m} ({p:g}B)' for m, p in d.models.items())}",
              f"- bits {d.bits}, group sizes {d.group_sizes}, calibration samples {d.calib_samples}, {d.n_rows} rows",
              f"- excluded: {', '.join(f'{k}: {v}' for k, v in d.excluded.items()) or 'none'}"]  # fmt: skip
    if profile.seed_spread:
        lines += ["", "## Seed-to-seed spread (sd of the chance-adjusted mean between calibration seeds)", "",
                  "| tier or task | " + " | ".join(f"{b}-bit" for b in _spread_bits(profile)) + " |",
                  "|---|" + "---|" * len(_spread_bits(profile))]  # fmt: skip
        for name, spread in profile.seed_spread.items():
            cells = [
                f"{spread.sd[b]:.4f} ({spread.configs[b]})" if b in spread.sd else "-" for b in _spread_bits(profile)
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "(configurations behind each sd in parentheses; the advisor adds this noise to its intervals)"]
    if profile.drop_spread or profile.stage_shift or profile.extrapolation:
        lines += ["", "## What widens a prediction (sd on the ln(-ln Acc_adj) scale)", "",
                  "| tier | a model's drop about the law's (baseline given) | other stage | per ln N past the data |",
                  "|---|---|---|---|"]  # fmt: skip
        shift = profile.stage_shift
        for tier in profile.tiers:
            drop = (profile.drop_spread or {}).get(tier)
            ext = (profile.extrapolation or {}).get(tier)
            cells = [
                "-"
                if drop is None
                else f"{drop.sd:.4f} + {drop.scale:.2f} x the law's drop ({drop.n} drops, {drop.models} models)",
                "-" if shift is None or tier not in shift.sd else f"{shift.sd[tier]:.4f} ({shift.stage})",
                "-" if ext is None else f"{ext.kappa:.4f}",
            ]
            lines.append(f"| {tier} | " + " | ".join(cells) + " |")
        if shift is not None:
            lines += ["", f"(the stage shift was measured on {', '.join(shift.models)})"]
    if profile.new_family is not None and profile.new_family.tasks:
        lines += _new_family_lines(profile)
    if diagnostics:
        lines += ["", "## Diagnostics", "", diagnostics]
    if validation:
        lines += ["", "## Held-out validation", "", validation]
    return "\n".join(lines) + "\n"


def _new_family_lines(profile: Profile) -> list[str]:
    """A family the profile was not fitted on, law alone: each task's median and 90% interval beside the fitted
    family's, at the data's middle size, 4-bit, at the figures' (G, Cb) (``reference``)."""
    nf, d = profile.new_family, profile.data
    assert nf is not None
    size = float(np.sqrt(d.params_b[0] * d.params_b[1])) * 1e9
    group, calib = reference(profile)
    at = (np.array([4.0]), np.array([group]), np.array([calib]))

    def cell(law: LawFit) -> str:
        x = law_draws(law, size, *at)[:, 0]
        return f"{np.median(x):.3f} [{np.quantile(x, 0.05):.3f}, {np.quantile(x, 0.95):.3f}]"

    where = f"{size / 1e9:.3g}B, 4-bit G={group:g}, Cb {calib:g}"
    head = f"## A family the fit never saw (law alone; chance-adjusted, {where})"
    fitted = " / ".join(profile.families)
    lines = ["", head, "", f"| task | tier | {fitted} | a new family |", "|---|---|---|---|"]
    for name, law in nf.tasks.items():
        own = profile.tasks.get(name)
        lines.append(f"| {name} | {law.tier} | {'-' if own is None else cell(own)} | {cell(law)} |")
    note = (
        f"(its tier's law drawn from the population of {', '.join(nf.families)}, moved by the task's offset from "
        "its tier as those families measured it, with the spread between them)"
    )
    return [*lines, "", note]


def _spread_bits(profile: Profile) -> list[str]:
    return sorted({b for s in (profile.seed_spread or {}).values() for b in s.sd}, key=float)


def diagnostics_markdown(profile: Profile) -> str | None:
    """The Bayesian fit's diagnostics as a list (None for an OLS profile)."""
    d = profile.diagnostics
    if d is None:
        return None
    lines = [f"- {d.method}: {d.num_chains} chain(s) x {d.num_draws} draws, {d.seconds:.0f} s"]
    if d.r_hat_max:
        lines.append("- max R-hat: " + ", ".join(f"{k} {v:.3f}" for k, v in d.r_hat_max.items()))
        lines.append("- min ESS: " + ", ".join(f"{k} {v:.0f}" for k, v in d.ess_min.items()))
        lines.append(f"- divergent transitions: {d.divergences}")
    if d.ppc_coverage:
        cov = ", ".join(f"{k} {v:.2f}" for k, v in d.ppc_coverage.items())
        lines.append(f"- posterior predictive check, observed counts inside their 90% interval: {cov}")
    if d.svi_converged is not None:
        lines.append(f"- SVI converged: {'yes' if d.svi_converged else 'no'}")
    lines.append(f"- gate: {'; '.join(d.problems) if d.problems else 'passed'}" + (" (forced)" if d.forced else ""))
    return "\n".join(lines)


def write_report(profile: Profile, data: Rows, out: Path, validation: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_scaling_n(profile, data, out),
        plot_scaling_b(profile, data, out),
        plot_cb_g_at_3bit(profile, out),
        plot_predicted_vs_actual(profile, data, out),
        plot_surface_3bit(profile, out),
    ]
    md = out / "summary.md"
    md.write_text(summary_markdown(profile, validation, diagnostics_markdown(profile)))
    return [*paths, md]


__all__ = ["TIERS", "write_report"]
