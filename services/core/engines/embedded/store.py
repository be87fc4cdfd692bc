"""The embedded engine's source of truth for one index version: SQLite in WAL mode.

`docs` holds the current revision of each item (source, hash, vector). `log` is a write-ahead log of every
write; its sequence number doubles as the row id of the revision it wrote. The text and vector indexes are
derived from these two tables and catch up by replaying `log`, so a crash between the SQLite commit and an
index update loses nothing, and readers in other processes see new writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.core.engines.base import Vector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY, row INTEGER NOT NULL UNIQUE, source TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Revision:
    """One log entry; `source` and `vector` are None when the entry deleted the item or was superseded."""

    seq: int
    id: str
    source: str | None
    vector: Vector | None


@dataclass(frozen=True)
class Row:
    id: str
    row: int
    source: str
    hash: str
    vector: Vector | None


class DocStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def write(self, upserts: Sequence[tuple[str, str, str, Vector]], deletes: Sequence[str]) -> int:
        """Apply upserts (id, source, hash, vector) and deletes in one transaction; return the last seq."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for doc_id, source, digest, vector in upserts:
                seq = conn.execute("INSERT INTO log (id) VALUES (?) RETURNING seq", (doc_id,)).fetchone()[0]
                conn.execute(
                    "INSERT OR REPLACE INTO docs (id, row, source, hash, vector) VALUES (?, ?, ?, ?, ?)",
                    (doc_id, seq, source, digest, np.asarray(vector, dtype=np.float32).tobytes()),
                )
            for doc_id in deletes:
                conn.execute("INSERT INTO log (id) VALUES (?)", (doc_id,))
                conn.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self.last_seq()

    def last_seq(self) -> int:
        row = self._conn().execute("SELECT max(seq) FROM log").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int, limit: int = 5000) -> list[Revision]:
        rows = (
            self._conn()
            .execute(
                "SELECT l.seq, l.id, d.source, d.vector FROM log l LEFT JOIN docs d ON d.id = l.id AND d.row = l.seq "
                "WHERE l.seq > ? ORDER BY l.seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )
        return [Revision(s, i, src, _vec(v)) for s, i, src, v in rows]

    def get(self, ids: Sequence[str], with_vectors: bool) -> dict[str, Row]:
        out: dict[str, Row] = {}
        conn = self._conn()
        cols = "id, row, source, hash, vector" if with_vectors else "id, row, source, hash, NULL"
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for i, r, src, h, v in conn.execute(f"SELECT {cols} FROM docs WHERE id IN ({marks})", chunk):
                out[i] = Row(i, r, src, h, _vec(v))
        return out

    def sources_by_rows(self, rows: Sequence[int]) -> dict[int, tuple[str, str]]:
        """row -> (id, source) for current revisions only."""
        out: dict[int, tuple[str, str]] = {}
        conn = self._conn()
        for start in range(0, len(rows), 500):
            chunk = [int(r) for r in rows[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for r, i, src in conn.execute(f"SELECT row, id, source FROM docs WHERE row IN ({marks})", chunk):
                out[r] = (i, src)
        return out

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM docs").fetchone()[0])

    def scan(self, batch_size: int, with_vectors: bool) -> Iterator[list[Row]]:
        after = ""
        cols = "id, row, source, hash, vector" if with_vectors else "id, row, source, hash, NULL"
        while True:
            rows = (
                self._conn()
                .execute(f"SELECT {cols} FROM docs WHERE id > ? ORDER BY id LIMIT ?", (after, batch_size))
                .fetchall()
            )
            if not rows:
                return
            yield [Row(i, r, src, h, _vec(v)) for i, r, src, h, v in rows]
            after = rows[-1][0]

    @contextmanager
    def snapshot(self, batch_size: int = 5000) -> Iterator[tuple[int, Iterator[list[Row]]]]:
        """Every current revision, in batches of rows, and the seq they reflect, read in one transaction
        (held until the block ends). Batches, so that a reader of 100k rows never holds them all at once."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            seq = self.last_seq()
            cursor = conn.execute("SELECT id, row, source, hash, vector FROM docs ORDER BY row")

            def batches() -> Iterator[list[Row]]:
                while chunk := cursor.fetchmany(batch_size):
                    yield [Row(i, r, s, h, _vec(v)) for i, r, s, h, v in chunk]

            yield seq, batches()
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _vec(blob: bytes | None) -> Vector | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32)
