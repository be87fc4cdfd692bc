"""SQLite as the platform's small durable stores use it: one connection per thread, WAL, explicit write
transactions (BEGIN IMMEDIATE, so that two writers queue instead of failing on upgrade)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SQLiteDatabase:
    def __init__(self, path: Path, schema: str, *, synchronous: str = "NORMAL", timeout_s: float = 60) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._synchronous = synchronous
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._conn().executescript(schema)

    def _conn(self) -> sqlite3.Connection:
        # sqlite3 connections must not be shared between threads: each thread gets its own.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=self._timeout_s, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
