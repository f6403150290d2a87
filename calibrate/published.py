"""Import published PTQ measurements (CSV, one row per configuration x task) into the results store.

The CSV columns are those of the shipped copy, ``calibrate/data/published`` (see its README). Values are stored as
printed; the accuracy is derived (percent / 100), the tier and chance level come from the tier map, and the item count
from the tier map's evaluation-set sizes so a percentage becomes a count for a binomial likelihood. Rows whose note says
SUSPECT are kept, flagged, and left out of fits by default.

The same columns are what ``calibrate export`` writes for the project's own sweep results (``write_csv``), plus
optional columns only a sweep knows exactly: ``tier``, ``chance`` (tasks the default tier map does not hold, e.g.
the synthetic world's), ``n_items`` and ``correct`` (the items actually evaluated, not the task's full size),
``calib_samples_effective``, ``calib_seed``, ``hidden_size`` and ``extra`` (JSON: timings, versions, spec hash).
Where present they take precedence over what the tier map would derive, so an exported sweep imports back into
exactly the rows it came from.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from strata.errors import UserError
from strata.metric import ACCURACY_METRICS, metric_base
from strata.rows import ResultRow
from strata.tiermap import TierMap

REQUIRED = (
    "source", "table", "model_family", "model", "params_b", "params_nonembed_b", "model_stage", "method", "bits",
    "act_bits", "group_size", "calib_samples", "calib_dataset", "calib_seqlen", "task", "metric", "value",
    "n_shot", "note",
)  # fmt: skip
OPTIONAL = ("tier", "chance", "n_items", "correct", "calib_samples_effective", "calib_seed", "hidden_size", "extra")


# Published accuracy columns (percent) and the metric a row stores; the inverse is what `write_csv` writes back.
PUBLISHED_METRICS = {"acc_pct": "acc", "acc_norm_pct": "acc_norm", "em_pct": "exact_match"}
_WRITTEN = {v: k for k, v in PUBLISHED_METRICS.items()}
# A fit's family is a model generation (one pretraining recipe); the tables name its point releases.
GENERATION = {"Llama-3.1": "Llama-3", "Llama-3.2": "Llama-3", "Llama-3.3": "Llama-3"}
# GPTQ group sizes a table leaves out but its makers' own quantization recipe fixes, by source prefix: the Qwen
# README's Int4/Int8 rows came from the makers' AutoGPTQ run, whose script (QwenLM/Qwen run_gptq.py, at 3b82e55)
# quantizes with --group-size 128 by default, desc_act off. The Qwen2 docs page's makers document their GPTQ recipe
# in the same repository (QwenLM/Qwen2.5 docs/source/quantization/gptq.rst: AutoGPTQ, group_size=128, desc_act off,
# calibrated on their own fine-tuning data, how many samples not said): its rows take G = 128 and keep no Cb
# (fit.profiles.select fits a family that states none at one nominal value, which leaves its likelihood).
RECIPE_GROUP_SIZE = {
    "github:QwenLM/Qwen@": (128, "group size 128 from the makers' recipe (QwenLM/Qwen run_gptq.py)"),
    "github:QwenLM/Qwen2.5@": (128, "group size 128 from the makers' recipe (QwenLM/Qwen2.5 gptq.rst)"),
}


def stored_metric(metric: str, task_metric: str | None) -> str | None:
    """The metric a row stores for a published column, or None when the value is not an accuracy over items
    (perplexity, a summary average, mc2, pass@k, the leaderboard's normalized lb2_* scores).

    ``acc_pct`` of a generation task (one whose tier-map metric is exact_match, e.g. GSM8K in the Qwen README) is
    its exact-match accuracy: a generation task has no other. A sweep's export writes its rows' own metric names
    (``acc_norm``, ``exact_match,strict-match``), which read back unchanged."""
    if metric == "acc_pct" and task_metric == "exact_match":
        return "exact_match"
    if metric in PUBLISHED_METRICS:
        return PUBLISHED_METRICS[metric]
    return metric if metric_base(metric) in ACCURACY_METRICS else None


class PublishedDataError(UserError):
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
                f"{path}: missing column(s) {', '.join(missing)}; a published CSV has the columns that "
                "`calibrate export --csv` writes (see calibrate/data/published/README.md in the strata package)"
            )
        for line, rec in enumerate(reader, start=2):
            yield _row(rec, where=f"{path.name} line {line}", tier_map=tier_map)


def _row(rec: dict[str, str], *, where: str, tier_map: TierMap) -> ResultRow:
    def num(col: str, integer: bool = False) -> float | int | None:
        return _number(rec[col] or "", where=where, column=col, integer=integer)

    def opt(col: str, integer: bool = False) -> float | int | None:
        return num(col, integer) if col in rec and rec[col] is not None else None

    value, params_b, bits = num("value"), num("params_b"), num("bits")
    for col, v in (("value", value), ("params_b", params_b), ("bits", bits)):
        if v is None:
            raise PublishedDataError(f"{where}: column '{col}' is empty; every row needs it")
    assert value is not None and params_b is not None and bits is not None
    metric = rec["metric"].strip()
    task = tier_map.resolve(rec["task"]) or rec["task"].strip().lower()
    spec = tier_map.tasks.get(task)
    stored = stored_metric(metric, spec.metric if spec else None)
    is_acc = stored is not None
    accuracy = value / 100.0 if (is_acc or metric.startswith("mean_acc_pct")) else None
    n_items = spec.items if (spec and is_acc) else None
    tier: str | None = spec.tier if (spec and is_acc) else None  # None also for tasks the map leaves out of every tier
    chance = spec.chance if spec else None
    correct = round(accuracy * n_items) if (accuracy is not None and n_items) else None
    if (rec.get("tier") or "").strip():
        tier = rec["tier"].strip()
        if tier not in ("KM", "KA", "KR"):
            raise PublishedDataError(f"{where}: column 'tier' must be KM, KA, KR or empty, got {tier!r}")
    chance = opt("chance") if opt("chance") is not None else chance
    if opt("n_items", True) is not None:
        n_items, correct = opt("n_items", True), opt("correct", True)  # type: ignore[assignment]
        if is_acc and correct is not None and n_items:
            if not 0 <= correct <= n_items:
                raise PublishedDataError(f"{where}: column 'correct' must be in 0..n_items ({n_items}), got {correct}")
            accuracy = correct / n_items  # exact counts beat the rounded percentage
    group_size, note = num("group_size", integer=True), rec["note"]
    recipe = next((v for k, v in RECIPE_GROUP_SIZE.items() if rec["source"].startswith(k)), None)
    if group_size is None and recipe is not None and rec["method"].strip().upper() == "GPTQ":
        group_size, note = recipe[0], f"{note}; {recipe[1]}" if note else recipe[1]
    try:
        extra = json.loads(rec["extra"]) if (rec.get("extra") or "").strip() else {}
    except json.JSONDecodeError:
        raise PublishedDataError(f"{where}: column 'extra' is not valid JSON; fix or empty it") from None
    return ResultRow(
        source=rec["source"],
        source_table=rec["table"],
        model=rec["model"],
        family=GENERATION.get(rec["model_family"].strip(), rec["model_family"].strip()),
        stage=rec["model_stage"],
        params_b=params_b,
        params_nonembed_b=num("params_nonembed_b"),
        method=rec["method"].strip(),
        bits=bits,
        act_bits=num("act_bits"),
        group_size=group_size,  # type: ignore[arg-type]
        calib_samples=num("calib_samples", integer=True),  # type: ignore[arg-type]
        calib_dataset=rec["calib_dataset"],
        calib_seqlen=num("calib_seqlen", integer=True),  # type: ignore[arg-type]
        task=task,
        tier=tier,
        chance=chance,
        metric=stored or metric,
        value=value,
        accuracy=accuracy,
        n_items=n_items,
        correct=correct,
        n_shot=num("n_shot", integer=True),  # type: ignore[arg-type]
        suspect="SUSPECT" in rec["note"],
        note=note,
        calib_samples_effective=opt("calib_samples_effective", True),  # type: ignore[arg-type]
        calib_seed=opt("calib_seed", True),  # type: ignore[arg-type]
        hidden_size=opt("hidden_size", True),  # type: ignore[arg-type]
        extra=extra,
    )


def write_csv(rows: Iterable[ResultRow], out: IO[str]) -> int:
    """Write rows in the published columns (+ the optional exact ones); ``read_published_csv`` reads them back."""
    writer = csv.DictWriter(out, fieldnames=[*REQUIRED, *OPTIONAL], lineterminator="\n")
    writer.writeheader()
    n = 0
    for r in rows:
        writer.writerow(
            {
                "source": r.source,
                "table": r.source_table,
                "model_family": r.family,
                "model": r.model,
                "params_b": repr(r.params_b),
                "params_nonembed_b": "" if r.params_nonembed_b is None else repr(r.params_nonembed_b),
                "model_stage": r.stage,
                "method": r.method,
                "bits": f"{r.bits:g}",
                "act_bits": "" if r.act_bits is None else f"{r.act_bits:g}",
                "group_size": _text(r.group_size),
                "calib_samples": _text(r.calib_samples),
                "calib_dataset": r.calib_dataset,
                "calib_seqlen": _text(r.calib_seqlen),
                "task": r.task,
                "metric": _WRITTEN.get(r.metric, r.metric),
                "value": repr(r.value),  # accuracies are stored as reported: percent
                "n_shot": _text(r.n_shot),
                "note": r.note,
                "tier": r.tier or "",
                "chance": "" if r.chance is None else repr(r.chance),
                "n_items": _text(r.n_items),
                "correct": _text(r.correct),
                "calib_samples_effective": _text(r.calib_samples_effective),
                "calib_seed": _text(r.calib_seed),
                "hidden_size": _text(r.hidden_size),
                "extra": json.dumps(r.extra, sort_keys=True) if r.extra else "",
            }
        )
        n += 1
    return n


def _text(v: int | None) -> str:
    return "" if v is None else str(v)


def published_csvs(folder: str | Path) -> list[Path]:
    """The measurement CSVs of a published-data folder (the tier-evidence table is not one)."""
    files = sorted(p for p in Path(folder).glob("*.csv") if p.name != "task_tier_evidence.csv")
    if not files:
        raise PublishedDataError(f"no CSV files in {folder}; pass the folder holding the published CSVs")
    return files
