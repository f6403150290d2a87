"""Calibration sets: Cb token windows of a stated length, drawn reproducibly from a text source.

Where the text comes from: local files (``.txt``: one document per non-empty line; ``.jsonl``: one document per row,
read from ``text_field``) or a Hugging Face dataset (id, config name, split, text field; loaded only when named, so
air-gapped machines use local files).

How windows are drawn, and why:
- Documents are shuffled with the seed, tokenized without special tokens, joined with the tokenizer's EOS and the
  stream is cut into consecutive windows of exactly ``seqlen`` tokens (as the GPTQ reference's WikiText loader takes
  windows of a concatenated corpus; short documents are not dropped, so no sample is silently lost).
- The first Cb windows are the calibration set. Sets for different Cb under one seed are therefore nested (Cb = 8
  is the first 8 windows of Cb = 128), which keeps the Cb factor of a sweep free of sampling noise between sizes,
  and the set for a Cb never depends on which other Cb a spec lists.
- Only as much text is tokenized as the largest Cb needs.
- The *effective* size is counted, never assumed: if the source runs out, the set has fewer windows than stated;
  ``build`` reports both and the sweep refuses (or, if allowed, stores the effective value).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from strata.errors import UserError, first_line


class CalibrationError(UserError):
    """A calibration source that cannot be used; one line naming the input and the fix."""


@dataclass(frozen=True)
class CalibrationSet:
    ids: torch.Tensor  # (effective, seqlen) token ids
    stated: int
    seqlen: int
    seed: int
    source: str  # what was read, as stored in results (calib_dataset)
    text_sha: str  # hash of the whole source's documents, so a changed file is visible in stored results

    @property
    def effective(self) -> int:
        return int(self.ids.shape[0])

    def take(self, n: int) -> CalibrationSet:
        """The nested subset of the first ``n`` windows (the set for a smaller Cb under the same seed)."""
        return CalibrationSet(self.ids[:n], n, self.seqlen, self.seed, self.source, self.text_sha)


def read_documents(
    files: list[Path] | None, dataset: str | None, name: str | None, split: str, field: str
) -> list[str]:
    """Non-empty documents of the source, in source order."""
    if files:
        docs: list[str] = []
        for path in files:
            docs += _read_file(path, field)
        return docs
    if not dataset:
        raise CalibrationError("calibration names neither files nor a dataset; set calibration.files or .dataset")
    try:
        import datasets

        data = datasets.load_dataset(dataset, name, split=split)
    except Exception as exc:  # datasets raises many types (connection, missing config, missing split)
        raise CalibrationError(
            f"cannot load calibration dataset {dataset} ({first_line(exc)}); use local files offline"
        ) from None
    if field not in data.column_names:
        raise CalibrationError(
            f"calibration dataset {dataset} has no column {field!r}; set calibration.text_field to one of "
            f"{', '.join(data.column_names)}"
        )
    return [t for t in data[field] if isinstance(t, str) and t.strip()]


def _read_file(path: Path, field: str) -> list[str]:
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist; fix calibration.files")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        docs = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CalibrationError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise CalibrationError(f"{path}:{lineno}: no string field {field!r}; set calibration.text_field")
            if row[field].strip():
                docs.append(row[field])
        return docs
    return [line for line in text.splitlines() if line.strip()]


def build(tokenizer: Any, documents: list[str], n: int, seqlen: int, seed: int, source: str) -> CalibrationSet:
    """Up to ``n`` windows of ``seqlen`` tokens (see the module docstring for how they are drawn)."""
    if n <= 0 or seqlen <= 0:
        raise CalibrationError(f"calibration size and seqlen must be positive, got Cb={n}, seqlen={seqlen}")
    if not documents:
        raise CalibrationError(f"calibration source {source} has no non-empty documents")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    eos = getattr(tokenizer, "eos_token_id", None)
    need = n * seqlen
    stream: list[int] = []
    for i in order:
        stream += tokenizer(documents[i], add_special_tokens=False)["input_ids"]
        if eos is not None:
            stream.append(eos)
        if len(stream) >= need:
            break
    windows = len(stream) // seqlen
    ids = torch.tensor(stream[: min(n, windows) * seqlen], dtype=torch.long).reshape(-1, seqlen)
    sha = hashlib.sha256("\n".join(documents).encode()).hexdigest()[:16]
    return CalibrationSet(ids, n, seqlen, seed, source, sha)
