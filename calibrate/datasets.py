"""A local mirror of lm-eval's task datasets, for GPU nodes without the Hugging Face Hub.

``calibrate datasets pack --tier-map M --out DIR`` runs where the data can be read and writes, for every lm-eval
task the map evaluates (every subtask of a group), the splits its config names (``training_split``,
``validation_split``, ``test_split``, ``fewshot_split``) as ``DIR/<dataset_path>/<dataset_name>/<split>.parquet``
(``default`` when the task has no ``dataset_name``) and ``DIR/manifest.json``: per dataset its path, name, splits
(file, rows, sha256) and the tasks that read it.

Where ``pack`` reads (``--from``):
- nothing given: ``datasets.load_dataset(dataset_path, dataset_name, **dataset_kwargs)`` as lm-eval calls it, i.e. the
  Hub, or the local Hugging Face datasets cache when ``HF_DATASETS_OFFLINE=1``;
- ``--from SRC``: a folder laid out like the mirror, ``SRC/<dataset_path>/<dataset_name or default>/``, holding either
  a ``DatasetDict.save_to_disk`` folder (``dataset_dict.json`` + one folder per split) or one file per split,
  ``<split>.parquet`` or ``<split>.jsonl`` (a JSON object per line). A mirror is itself a valid ``--from``.

On the node, ``STRATA_DATASETS=DIR`` (or ``calibrate evaluate --datasets DIR``) makes every task read its data from
the mirror: ``calibrate.evaluate`` replaces each task's ``dataset_path``/``dataset_kwargs`` by a loader of these files
(lm-eval's ``custom_dataset``); the task's prompts, filters and metrics are lm-eval's own. A task whose dataset or
split the mirror lacks stops before any evaluation, in one line naming the task and the pack command.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import UserError

ENV = "STRATA_DATASETS"
MANIFEST = "manifest.json"
FORMAT = 1
SPLIT_FIELDS = ("training_split", "validation_split", "test_split", "fewshot_split")


class MirrorError(UserError):
    """A mirror (or a pack source) that cannot serve a task; one line naming the task, the dataset and the fix."""


def _folder(path: str, name: str | None) -> Path:
    return Path(*path.split("/")) / (name or "default")


def _key(path: str, name: str | None) -> str:
    return f"{path}:{name or 'default'}"


@dataclass(frozen=True)
class Need:
    """One dataset some tasks read: its Hub path and config name, loader kwargs, and the splits they use."""

    path: str
    name: str | None
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)
    splits: set[str] = field(default_factory=set, compare=False)
    tasks: list[str] = field(default_factory=list, compare=False)

    @property
    def label(self) -> str:
        return self.path + (f" ({self.name})" if self.name else "")


def task_data(task: str, cfg: dict[str, Any]) -> tuple[str, str | None, dict[str, Any], set[str]] | None:
    """(dataset_path, dataset_name, dataset_kwargs, splits) of one lm-eval task config; None when the task reads its
    own local data (``custom_dataset``)."""
    if cfg.get("custom_dataset"):
        return None
    path = cfg.get("dataset_path")
    if not path:
        raise MirrorError(
            f"task {task} is defined in Python ({cfg.get('class', 'no dataset_path')}); its data cannot be mirrored, "
            "evaluate it where the Hub is reachable or leave it out of the tier map"
        )
    splits = {str(cfg[f]) for f in SPLIT_FIELDS if cfg.get(f) is not None}
    fewshot = cfg.get("fewshot_config") or {}
    if isinstance(fewshot, dict) and fewshot.get("split"):
        splits.add(str(fewshot["split"]))
    return str(path), cfg.get("dataset_name"), dict(cfg.get("dataset_kwargs") or {}), splits


# --- the mirror, as a node reads it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    root: Path
    entries: dict[str, dict[str, Any]]  # _key(path, name) -> manifest entry

    @classmethod
    def open(cls, root: str | Path) -> Mirror:
        root = Path(root).expanduser()
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise MirrorError(
                f"dataset mirror {root} has no {MANIFEST}; write one with `calibrate datasets pack --tier-map MAP "
                f"--out {root}` where the Hub is reachable"
            )
        try:
            data = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise MirrorError(f"{manifest} is not valid JSON ({exc.msg}); pack the mirror again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MirrorError(f"{manifest}: not a format-{FORMAT} strata dataset mirror; pack it again")
        return cls(root.resolve(), {_key(e["path"], e["name"]): e for e in data["datasets"]})

    @classmethod
    def from_env(cls, explicit: str | Path | None = None) -> Mirror | None:
        """The mirror named explicitly, else by ``$STRATA_DATASETS``, else None (read the Hub or its cache)."""
        where = explicit if explicit is not None else os.environ.get(ENV) or None
        return cls.open(where) if where is not None else None

    def check(self, task: str, path: str, name: str | None, splits: Iterable[str]) -> None:
        entry = self.entries.get(_key(path, name))
        label = path + (f" ({name})" if name else "")
        fix = f"run `calibrate datasets pack --tier-map MAP --out {self.root}` for it where the Hub is reachable"
        if entry is None:
            raise MirrorError(f"task {task}: dataset {label} is not in the mirror {self.root}; {fix}")
        missing = sorted(set(splits) - set(entry["splits"]))
        if missing:
            raise MirrorError(
                f"task {task}: the mirror {self.root} lacks split(s) {', '.join(missing)} of {label}; {fix}"
            )

    def loader(self, path: str, name: str | None) -> Callable[..., Any]:
        """lm-eval ``custom_dataset``: the mirrored splits as a ``DatasetDict`` (read into memory, no cache files)."""
        entry = self.entries[_key(path, name)]
        root = self.root

        def load(**_: Any) -> Any:
            import datasets
            import pyarrow.parquet as pq

            return datasets.DatasetDict(
                {split: datasets.Dataset(pq.read_table(root / s["file"])) for split, s in entry["splits"].items()}
            )

        return load


# --- packing -----------------------------------------------------------------------------------------------------


def needs(configs: dict[str, dict[str, Any]]) -> list[Need]:
    """The datasets behind lm-eval task configs (task name -> config), one per (path, name), splits merged."""
    out: dict[str, Need] = {}
    for task, cfg in configs.items():
        data = task_data(task, cfg)
        if data is None:
            continue
        path, name, kwargs, splits = data
        need = out.setdefault(_key(path, name), Need(path, name, kwargs))
        need.splits.update(splits)
        need.tasks.append(task)
    return list(out.values())


def _read_source(need: Need, source: Path | None) -> Any:
    """The dataset's splits as a DatasetDict, from ``source`` (see the module docstring) or the Hub/HF cache."""
    import datasets

    if source is None:
        kwargs = dict(need.kwargs)
        kwargs.pop("trust_remote_code", None)  # datasets >= 4 runs no dataset scripts
        try:
            return datasets.load_dataset(need.path, need.name, **kwargs)
        except Exception as exc:  # the Hub, the cache or the network: many types
            from strata.errors import first_line

            raise MirrorError(
                f"task {need.tasks[0]}: cannot read dataset {need.label} from the Hub or the HF cache "
                f"({first_line(exc)}); run pack where the Hub is reachable, or pass --from a local copy"
            ) from None
    folder = source / _folder(need.path, need.name)
    if (folder / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(folder))
    splits: dict[str, Any] = {}
    for split in sorted(need.splits):
        if (folder / f"{split}.parquet").is_file():
            import pyarrow.parquet as pq

            splits[split] = datasets.Dataset(pq.read_table(folder / f"{split}.parquet"))
        elif (folder / f"{split}.jsonl").is_file():
            lines = (folder / f"{split}.jsonl").read_text().splitlines()
            splits[split] = datasets.Dataset.from_list([json.loads(line) for line in lines if line.strip()])
    if not splits:
        raise MirrorError(
            f"task {need.tasks[0]}: dataset {need.label} is not in {source} (looked for {folder}/dataset_dict.json "
            "or <split>.parquet|jsonl); add it, or pack from the Hub"
        )
    return datasets.DatasetDict(splits)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pack(
    configs: dict[str, dict[str, Any]],
    out: str | Path,
    source: str | Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Write the mirror of these task configs' datasets under ``out`` (added to a mirror already there); return
    the manifest."""
    out = Path(out)
    src = Path(source) if source is not None else None
    if src is not None and not src.is_dir():
        raise MirrorError(f"--from {src} is not a directory; pass a folder laid out <dataset_path>/<name>/")
    import datasets

    datasets.disable_progress_bars()
    todo = needs(configs)
    read = {n.label: _read_source(n, src) for n in todo}  # read everything before writing anything
    for need in todo:
        have = read[need.label]
        missing = sorted(need.splits - set(have))
        if missing:
            raise MirrorError(
                f"task {need.tasks[0]}: dataset {need.label} has no split(s) {', '.join(missing)} in its source "
                f"(it has {', '.join(sorted(have)) or 'none'}); add them to the source"
            )
    manifest_path = out / MANIFEST
    entries: dict[str, dict[str, Any]] = {}
    if manifest_path.is_file():
        entries = {_key(e["path"], e["name"]): e for e in Mirror.open(out).entries.values()}
    for need in todo:
        folder = _folder(need.path, need.name)
        (out / folder).mkdir(parents=True, exist_ok=True)
        splits = {}
        for split in sorted(need.splits):
            rel = folder / f"{split}.parquet"
            read[need.label][split].to_parquet(str(out / rel))
            splits[split] = {
                "file": rel.as_posix(),
                "rows": read[need.label][split].num_rows,
                "sha256": _sha256(out / rel),
            }
        entries[_key(need.path, need.name)] = {
            "path": need.path,
            "name": need.name,
            "splits": splits,
            "tasks": sorted(need.tasks),
        }
        sizes = ", ".join(f"{split} {info['rows']}" for split, info in splits.items())
        log(f"{need.label}: {sizes} rows")
    manifest = {"format": FORMAT, "datasets": sorted(entries.values(), key=lambda e: (e["path"], e["name"] or ""))}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
