"""Import published PTQ measurements (CSV, one row per configuration x task) into the results store.

The CSV columns are those of ``shared/data/published`` (see its README). Values are stored as printed; the
accuracy is derived (percent / 100), the tier and chance level come from the tier map, and the item count from
the tier map's evaluation-set sizes so a percentage becomes a count for a binomial likelihood. Rows whose note
says SUSPECT are kept, flagged, and left out of fits by default.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from calibrate.store import ResultRow
from calibrate.tiermap import TierMap

REQUIRED = (
    "source", "table", "model_family", "model", "params_b", "params_nonembed_b", "model_stage", "method", "bits",
    "act_bits", "group_size", "calib_samples", "calib_dataset", "calib_seqlen", "task", "metric", "value",
    "n_shot", "note",
)  # fmt: skip


class PublishedDataError(ValueError):
    """A CSV that cannot be imported; one line naming the file, line, column and fix."""


def _number(text: str, *, where: str, column: str, integer: bool = False) -> float | int | None:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise PublishedDataError(f"{where}: column '{column}' must be a number, got {text!r}; fix the value") from None
    if integer:
        if value != int(value):
            raise PublishedDataError(f"{where}: column '{column}' must be a whole number, got {text!r}")
        return int(value)
    return value


def read_published_csv(path: str | Path, tier_map: TierMap) -> Iterator[ResultRow]:
    """Yield validated rows of one published CSV; raise PublishedDataError on the first bad line."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise PublishedDataError(
                f"{path}: missing column(s) {', '.join(missing)}; the columns are those of shared/data/published"
            )
        for line, rec in enumerate(reader, start=2):
            yield _row(rec, where=f"{path.name} line {line}", tier_map=tier_map)


def _row(rec: dict[str, str], *, where: str, tier_map: TierMap) -> ResultRow:
    def num(col: str, integer: bool = False) -> float | int | None:
        return _number(rec[col] or "", where=where, column=col, integer=integer)

    value, params_b, bits = num("value"), num("params_b"), num("bits")
    for col, v in (("value", value), ("params_b", params_b), ("bits", bits)):
        if v is None:
            raise PublishedDataError(f"{where}: column '{col}' is empty; every row needs it")
    assert value is not None and params_b is not None and bits is not None
    metric = rec["metric"].strip()
    task = tier_map.resolve(rec["task"]) or rec["task"].strip().lower()
    spec = tier_map.tasks.get(task)
    is_acc = metric == "acc_pct"
    accuracy = value / 100.0 if metric.startswith(("acc_pct", "mean_acc_pct")) else None
    n_items = spec.items if (spec and is_acc) else None
    return ResultRow(
        source=rec["source"],
        source_table=rec["table"],
        model=rec["model"],
        family=rec["model_family"],
        stage=rec["model_stage"],
        params_b=params_b,
        params_nonembed_b=num("params_nonembed_b"),
        method=rec["method"].strip(),
        bits=bits,
        act_bits=num("act_bits"),
        group_size=num("group_size", integer=True),  # type: ignore[arg-type]
        calib_samples=num("calib_samples", integer=True),  # type: ignore[arg-type]
        calib_dataset=rec["calib_dataset"],
        calib_seqlen=num("calib_seqlen", integer=True),  # type: ignore[arg-type]
        task=task,
        tier=spec.tier if (spec and is_acc) else None,  # None also for tasks the map leaves out of every tier
        chance=spec.chance if spec else None,
        metric="acc" if is_acc else metric,
        value=value,
        accuracy=accuracy,
        n_items=n_items,
        correct=round(accuracy * n_items) if (accuracy is not None and n_items) else None,
        n_shot=num("n_shot", integer=True),  # type: ignore[arg-type]
        suspect="SUSPECT" in rec["note"],
        note=rec["note"],
    )


def published_csvs(folder: str | Path) -> list[Path]:
    """The measurement CSVs of a published-data folder (the tier-evidence table is not one)."""
    files = sorted(p for p in Path(folder).glob("*.csv") if p.name != "task_tier_evidence.csv")
    if not files:
        raise PublishedDataError(f"no CSV files in {folder}; pass the folder holding the published CSVs")
    return files
