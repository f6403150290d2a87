"""The results store: one SQLite file (WAL) holding published measurements and the project's own sweep results.

One schema for both, so ``fit`` reads them the same way. A row is one (model, configuration, task) measurement.
Rows are keyed by ``row_key`` (a hash of what identifies the measurement), so importing or committing the same
result twice is harmless: the store never duplicates and never overwrites what it holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strata.errors import UserError
from strata.rows import ResultRow

SCHEMA_VERSION = 1


class StoreError(UserError):
    """A store that cannot be opened or written; the message is one line naming the problem and the fix."""


COLUMNS = list(ResultRow.model_fields)
_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    row_key TEXT PRIMARY KEY,
    {", ".join(f"{c} {'TEXT' if c == 'extra' else ''}".strip() for c in COLUMNS)},
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS results_fit ON results (family, method, metric);
"""


class Store:
    """A results store on disk. Use ``Store.open(path)``; every write is one transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        path = Path(path)
        if not path.exists() and not create:
            raise StoreError(f"store {path} does not exist; create it with `calibrate import-published --store {path}`")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {path} ({exc}); pass a writable path with --store") from None
        store = cls(conn, path)
        store._check_schema()
        return store

    def _check_schema(self) -> None:
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a strata store ({exc}); pass another --store path") from None
        if "meta" in tables:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {version}, this strata reads {SCHEMA_VERSION}; "
                    "export it with the strata that wrote it or use a new --store path"
                )
            return
        if tables - {"meta", "results"}:
            raise StoreError(f"{self.path} is an SQLite file but not a strata store; pass another --store path")
        with self.conn:
            self.conn.executescript(_DDL)
            self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, rows: Iterable[ResultRow]) -> int:
        """Insert rows atomically; rows already stored (same key) are left untouched. Returns rows added."""
        placeholders = ", ".join("?" for _ in range(len(COLUMNS) + 1))
        sql = f"INSERT OR IGNORE INTO results (row_key, {', '.join(COLUMNS)}) VALUES ({placeholders})"
        values = [(r.key(), *_to_sql(r)) for r in rows]
        try:
            with self.conn:
                before = self.conn.total_changes
                self.conn.executemany(sql, values)
                return self.conn.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to store {self.path} ({exc}); check the path is writable") from None

    def rows(self, where: str = "1", params: tuple[Any, ...] = ()) -> Iterator[ResultRow]:
        """Stored rows matching an SQL condition (trusted callers only: the condition is not escaped)."""
        for rec in self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM results WHERE {where}", params):
            data = dict(rec)
            data["extra"] = json.loads(data["extra"] or "{}")
            data["suspect"] = bool(data["suspect"])
            yield ResultRow.model_validate(data)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])


def _to_sql(row: ResultRow) -> tuple[Any, ...]:
    data = row.model_dump()
    data["extra"] = json.dumps(data["extra"], sort_keys=True)
    data["suspect"] = int(data["suspect"])
    return tuple(data[c] for c in COLUMNS)


@contextmanager
def open_store(path: str | Path, *, create: bool = True) -> Iterator[Store]:
    store = Store.open(path, create=create)
    try:
        yield store
    finally:
        store.close()
