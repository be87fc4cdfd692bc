"""Rules stored durably: SQLite (WAL) under the data dir, one row per rule, and a revision number that every
write increments, so that each API process notices a change made by another at its next search."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from services.core.errors import NotFoundError
from services.rules.model import Rule, RuleIn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""


class RuleStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)

    def revision(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    def all(self) -> list[Rule]:
        with self._lock:
            rows = self._conn.execute("SELECT body FROM rules ORDER BY created_at, id").fetchall()
        return [Rule.model_validate_json(r[0]) for r in rows]

    def get(self, rule_id: str) -> Rule:
        with self._lock:
            row = self._conn.execute("SELECT body FROM rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            raise NotFoundError("rule", rule_id)
        return Rule.model_validate_json(row[0])

    def snapshot(self) -> tuple[int, list[Rule]]:
        """The revision and every rule, read in one transaction (consistent with each other)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                rev = int(self._conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])
                rows = self._conn.execute("SELECT body FROM rules ORDER BY created_at, id").fetchall()
            finally:
                self._conn.execute("COMMIT")
        return rev, [Rule.model_validate_json(r[0]) for r in rows]

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        """Run one write and bump the revision in the same transaction; returns the rows changed."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = self._conn.execute(sql, args).rowcount
                if changed:
                    self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(changed)

    def create(self, rule: RuleIn, rule_id: str | None = None) -> Rule:
        now = datetime.now(UTC)
        stored = Rule(
            **rule.model_dump(by_alias=False), id=rule_id or uuid.uuid4().hex[:12], created_at=now, updated_at=now
        )
        self._write(
            "INSERT INTO rules (id, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (stored.id, stored.model_dump_json(by_alias=True), now.isoformat(), now.isoformat()),
        )
        return stored

    def replace(self, rule_id: str, rule: RuleIn) -> Rule:
        old = self.get(rule_id)
        now = datetime.now(UTC)
        stored = Rule(**rule.model_dump(by_alias=False), id=rule_id, created_at=old.created_at, updated_at=now)
        if not self._write(
            "UPDATE rules SET body = ?, updated_at = ? WHERE id = ?",
            (stored.model_dump_json(by_alias=True), now.isoformat(), rule_id),
        ):
            raise NotFoundError("rule", rule_id)
        return stored

    def delete(self, rule_id: str) -> None:
        if not self._write("DELETE FROM rules WHERE id = ?", (rule_id,)):
            raise NotFoundError("rule", rule_id)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
