"""The progress display of ``calibrate sweep`` (rich, on stderr): two lines, the configurations of the whole sweep
with an ETA, and the stage in flight (model, unit, layer); events of remote executors stay on screen above them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from calibrate.sweep import SweepSummary


class SweepDisplay:
    WIDTH = 44  # characters of the stage line

    def __init__(self, quiet: bool) -> None:
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.bar = Progress(
            TextColumn(f"{{task.description:<{self.WIDTH}}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=quiet,
            transient=False,
        )
        self._configs = self.bar.add_task("configurations", total=None)
        self._stage = self.bar.add_task("starting", total=None)
        self.summary: SweepSummary | None = None  # the latest, for what an interrupted run committed

    @property
    def ran(self) -> int:
        return self.summary.ran if self.summary is not None else 0

    def on_start(self, summary: SweepSummary) -> None:
        # reset, so the ETA is the rate of this run, not inflated by configurations already stored
        self.bar.reset(self._configs, total=summary.planned, completed=summary.already_stored)
        self.summary = summary

    def on_config(self, summary: SweepSummary, _rows: Any) -> None:
        self.bar.update(self._configs, completed=summary.already_stored + summary.ran)
        self.summary = summary

    def stage(self, message: str) -> None:
        self.bar.update(self._stage, description=message[: self.WIDTH])

    def event(self, message: str) -> None:
        (self.stage if self.quiet else self.bar.console.print)(message)

    def print(self, message: str) -> None:
        self.console.print(message)
