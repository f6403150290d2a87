"""The results store: one SQLite file (WAL) holding published measurements and the project's own sweep results.

One schema for both, so ``fit`` reads them the same way. A row is one (model, configuration, task) measurement.
Rows are keyed by ``row_key`` (a hash of what identifies the measurement), so importing or committing the same
result twice is harmless: the store never duplicates and never overwrites what it holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strata.errors import UserError
from strata.rows import ResultRow


class StoreError(UserError):
    """A store that cannot be opened or written; the message is one line naming the problem and the fix."""


COLUMNS = list(ResultRow.model_fields)
Step = str | Callable[[sqlite3.Connection], None]  # one SQL statement, or a function of the open connection
# Schema version -> the steps that bring a store of the version before it up to it, applied in order on open, each
# version in one transaction. A new schema adds one entry here; a store of a newer version is refused untouched.
MIGRATIONS: dict[int, tuple[Step, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS results (
            row_key TEXT PRIMARY KEY,
            {", ".join(f"{c} {'TEXT' if c == 'extra' else ''}".strip() for c in COLUMNS)},
            created_at TEXT NOT NULL DEFAULT (datetime('now'))
        )""",
        "CREATE INDEX IF NOT EXISTS results_fit ON results (family, method, metric)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


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
        version = self._version()
        if version == SCHEMA_VERSION:
            return
        if version is None or version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {version}, this strata reads {SCHEMA_VERSION}; "
                "export it with the strata that wrote it or use a new --store path"
            )
        self._migrate()

    def _version(self) -> int | None:
        """The store's schema version: 0 for a new (empty) file, None for a strata store that records none."""
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a strata store ({exc}); pass another --store path") from None
        if "meta" not in tables:
            if tables - {"results"}:
                raise StoreError(f"{self.path} is an SQLite file but not a strata store; pass another --store path")
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else None

    def _migrate(self) -> None:
        """Apply the migrations after the store's version, each version with its record in one transaction."""
        for version in sorted(MIGRATIONS):
            self.conn.execute("BEGIN IMMEDIATE")  # another process may open the same new file: re-read under the lock
            try:
                if (self._version() or 0) < version:
                    for step in MIGRATIONS[version]:
                        self.conn.execute(step) if isinstance(step, str) else step(self.conn)
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise

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

    def rows(self, where: str = "1", params: tuple[Any, ...] = (), **equal: Any) -> Iterator[ResultRow]:
        """Stored rows matching an SQL condition (trusted callers only: the condition is not escaped) and whose
        columns equal the ``equal`` values (a None value sets no condition), e.g. ``rows(source=s, model=m)``."""
        unknown = set(equal) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not columns of the store: {', '.join(sorted(unknown))}")
        given = {c: v for c, v in equal.items() if v is not None}
        where = " AND ".join([f"({where})", *(f"{c} = ?" for c in given)])
        sql = f"SELECT {', '.join(COLUMNS)} FROM results WHERE {where}"
        for rec in self.conn.execute(sql, (*params, *given.values())):
            data = dict(rec)
            data["extra"] = json.loads(data["extra"] or "{}")
            data["suspect"] = bool(data["suspect"])
            yield ResultRow.model_validate(data)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def task_counts(
        self,
        source: str,
        protocol: str,
        *,
        method: str | None = None,
        calib_seqlen: int | None = None,
        calib_dataset: str = "",
    ) -> list[tuple[Any, ...]]:
        """Distinct tasks stored per configuration ``(model, bits, group size, Cb, seed, tasks)`` of one source and
        protocol (``source_table``): the unquantized references (``method`` None: bits >= 16), or the rows of one
        quantization method and calibration (length and source; ``calib_seqlen`` None: none)."""
        cond, params = (
            ("bits >= 16", ())
            if method is None
            else ("method = ? AND calib_seqlen IS ? AND calib_dataset = ?", (method, calib_seqlen, calib_dataset))
        )
        sql = (
            "SELECT model, bits, group_size, calib_samples, calib_seed, COUNT(DISTINCT task) FROM results "
            f"WHERE source = ? AND source_table = ? AND {cond} "
            "GROUP BY model, bits, group_size, calib_samples, calib_seed"
        )
        return [tuple(r) for r in self.conn.execute(sql, (source, protocol, *params))]

    def summary(self) -> list[dict[str, Any]]:
        """What the store holds: per source, model and method, the configurations and rows."""
        sql = (
            "SELECT source, model, method, COUNT(DISTINCT printf('%s|%s|%s|%s|%s', bits, group_size, calib_samples, "
            "calib_seed, source_table)), COUNT(*) FROM results "
            "GROUP BY source, model, method ORDER BY source, model, method"
        )
        return [
            {"source": src[:40], "model": model, "method": method, "configurations": n_cfg, "rows": n_rows}
            for src, model, method, n_cfg, n_rows in self.conn.execute(sql)
        ]


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
