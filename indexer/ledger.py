"""The event ledger: every accepted event is recorded here before the API answers 202.

Celery only wakes workers up; the ledger is the queue of record. Workers claim events with a lease,
process them and record the outcome in the same transaction as the item's new state. A worker that dies
leaves its lease to expire, and the reconciler puts those events back in the queue. The `items` table
holds each item's last applied version (a delete leaves a tombstone), which makes processing idempotent
and order-safe.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from services.core.sqlite import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    accepted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    available_at REAL NOT NULL,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS events_state ON events (state, available_at, seq);
CREATE INDEX IF NOT EXISTS events_item ON events (item_id, state);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    hash TEXT,
    item TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS object_items (object_key TEXT NOT NULL, item_id TEXT NOT NULL,
                                         PRIMARY KEY (object_key, item_id));
CREATE INDEX IF NOT EXISTS object_items_by_item ON object_items (item_id);
"""


class EventState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    SUPERSEDED = "superseded"  # an older version, or a replay of one already applied: changed nothing
    DEAD = "dead"  # in the dead-letter store, with its error; replayable


@dataclass(frozen=True)
class NewEvent:
    item_id: str
    op: str
    version: int | None
    payload: dict[str, Any]
    source: str = "api"


@dataclass(frozen=True)
class LedgerEvent:
    event_id: str
    seq: int
    item_id: str
    op: str
    version: int
    payload: dict[str, Any]
    source: str
    state: EventState
    attempts: int
    error: str | None
    accepted_at: float
    updated_at: float


@dataclass(frozen=True)
class ItemState:
    item_id: str
    version: int
    deleted: bool
    hash: str | None
    item: dict[str, Any] | None


@dataclass(frozen=True)
class Outcome:
    event_id: str
    state: EventState
    error: str | None = None
    count_attempt: bool = False
    retry_after_s: float = 0.0


_COLS = "event_id, seq, item_id, op, version, payload, source, state, attempts, error, accepted_at, updated_at"


def _event(row: tuple[Any, ...]) -> LedgerEvent:
    eid, seq, item_id, op, version, payload, source, state, attempts, error, acc, upd = row
    return LedgerEvent(
        eid,
        seq,
        item_id,
        op,
        version,
        json.loads(payload),
        source,
        EventState(state),
        attempts,
        error,
        acc,
        upd,
    )


class EventLedger(SQLiteDatabase):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, synchronous="FULL")  # an accepted event survives a power cut

    # ---- accepting ---------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent]) -> list[LedgerEvent]:
        """Record events durably (one transaction); events without a version get a monotonic one."""
        now = time.time()
        out: list[LedgerEvent] = []
        with self._tx() as conn:
            for ev in events:
                version = ev.version if ev.version is not None else self._next_version(conn)
                eid = uuid.uuid4().hex
                row = conn.execute(
                    f"INSERT INTO events (event_id, item_id, op, version, payload, source, state, accepted_at, "
                    f"updated_at, available_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING {_COLS}",
                    (eid, ev.item_id, ev.op, version, json.dumps(ev.payload), ev.source, now, now, now),
                ).fetchone()
                out.append(_event(row))
        return out

    @staticmethod
    def _next_version(conn: sqlite3.Connection) -> int:
        # Microseconds since the epoch, never repeating: later events of an item always get higher versions.
        last = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        version = max(time.time_ns() // 1000, (last[0] + 1) if last else 0)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (version,))
        return version

    # ---- working -----------------------------------------------------------------------------------

    def claim(self, limit: int, lease_s: float) -> list[LedgerEvent]:
        """Take up to `limit` ready events, oldest first, skipping items another worker holds."""
        now = time.time()
        with self._tx() as conn:
            rows = conn.execute(
                f"UPDATE events SET state = 'processing', lease_until = ?, updated_at = ? WHERE seq IN ("
                "  SELECT seq FROM events WHERE state = 'queued' AND available_at <= ? AND item_id NOT IN ("
                "    SELECT item_id FROM events WHERE state = 'processing') ORDER BY seq LIMIT ?) "
                f"RETURNING {_COLS}",
                (now + lease_s, now, now, limit),
            ).fetchall()
        return sorted((_event(r) for r in rows), key=lambda e: e.seq)

    def item_states(self, item_ids: Iterable[str]) -> dict[str, ItemState]:
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, ItemState] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for item_id, version, deleted, digest, item in self._conn().execute(
                f"SELECT item_id, version, deleted, hash, item FROM items WHERE item_id IN ({marks})", chunk
            ):
                out[item_id] = ItemState(item_id, version, bool(deleted), digest, json.loads(item) if item else None)
        return out

    def commit(self, states: Sequence[ItemState], outcomes: Sequence[Outcome]) -> None:
        """Record new item states and event outcomes together: either both happen or neither."""
        now = time.time()
        with self._tx() as conn:
            for st in states:
                conn.execute(
                    "INSERT OR REPLACE INTO items (item_id, version, deleted, hash, item) VALUES (?, ?, ?, ?, ?)",
                    (
                        st.item_id,
                        st.version,
                        int(st.deleted),
                        st.hash,
                        json.dumps(st.item) if st.item else None,
                    ),
                )
            self._record(conn, outcomes, now)

    def release(self, outcomes: Sequence[Outcome]) -> None:
        """Record outcomes without touching item states (failures, retries)."""
        with self._tx() as conn:
            self._record(conn, outcomes, time.time())

    @staticmethod
    def _record(conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float) -> None:
        for o in outcomes:
            conn.execute(
                "UPDATE events SET state = ?, error = ?, attempts = attempts + ?, updated_at = ?, "
                "available_at = ?, lease_until = NULL WHERE event_id = ?",
                (o.state.value, o.error, int(o.count_attempt), now, now + o.retry_after_s, o.event_id),
            )

    def expire_leases(self) -> int:
        """Events claimed by a worker that vanished go back to the queue."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE events SET state = 'queued', lease_until = NULL, updated_at = ?, available_at = ? "
                "WHERE state = 'processing' AND lease_until < ?",
                (now, now, now),
            )
        return cur.rowcount

    def in_flight_since_before(self, when: float) -> int:
        """Events a worker claimed before `when` and has not finished: a reindex waits for them to drain."""
        row = (
            self._conn()
            .execute("SELECT count(*) FROM events WHERE state = 'processing' AND updated_at < ?", (when,))
            .fetchone()
        )
        return int(row[0])

    def live_item_count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM items WHERE deleted = 0").fetchone()[0])

    def ready_count(self) -> int:
        row = (
            self._conn()
            .execute("SELECT count(*) FROM events WHERE state = 'queued' AND available_at <= ?", (time.time(),))
            .fetchone()
        )
        return int(row[0])

    # ---- reading and the dead-letter store --------------------------------------------------------

    def get(self, event_id: str) -> LedgerEvent | None:
        row = self._conn().execute(f"SELECT {_COLS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return _event(row) if row else None

    def by_item(self, item_id: str, limit: int = 50) -> list[LedgerEvent]:
        rows = (
            self._conn()
            .execute(f"SELECT {_COLS} FROM events WHERE item_id = ? ORDER BY seq DESC LIMIT ?", (item_id, limit))
            .fetchall()
        )
        return [_event(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT state, count(*) FROM events GROUP BY state").fetchall()
        return {s.value: 0 for s in EventState} | {state: n for state, n in rows}

    def states_of(self, event_ids: Sequence[str]) -> dict[str, EventState]:
        out: dict[str, EventState] = {}
        for start in range(0, len(event_ids), 500):
            chunk = list(event_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for eid, state in self._conn().execute(
                f"SELECT event_id, state FROM events WHERE event_id IN ({marks})", chunk
            ):
                out[eid] = EventState(state)
        return out

    def dead(self, limit: int = 100) -> list[LedgerEvent]:
        rows = (
            self._conn()
            .execute(f"SELECT {_COLS} FROM events WHERE state = 'dead' ORDER BY seq LIMIT ?", (limit,))
            .fetchall()
        )
        return [_event(r) for r in rows]

    def replay(self, event_ids: Sequence[str] | None = None) -> int:
        """Put dead events back in the queue (all of them when no ids are given), with fresh attempts."""
        now = time.time()
        with self._tx() as conn:
            if event_ids is None:
                cur = conn.execute(
                    "UPDATE events SET state = 'queued', attempts = 0, available_at = ?, "
                    "updated_at = ? WHERE state = 'dead'",
                    (now, now),
                )
                return cur.rowcount
            total = 0
            for eid in event_ids:
                total += conn.execute(
                    "UPDATE events SET state = 'queued', attempts = 0, available_at = ?, "
                    "updated_at = ? WHERE state = 'dead' AND event_id = ?",
                    (now, now, eid),
                ).rowcount
            return total

    def all_items(self) -> Iterator[ItemState]:
        for item_id, version, deleted, digest, item in self._conn().execute(
            "SELECT item_id, version, deleted, hash, item FROM items ORDER BY item_id"
        ):
            yield ItemState(item_id, version, bool(deleted), digest, json.loads(item) if item else None)

    # ---- S3 objects -> items, so that ObjectRemoved can delete what an object brought ---------------

    def replace_object(self, object_key: str, item_ids: Sequence[str], still: Sequence[str] = ()) -> list[str]:
        """Remember that `object_key` now holds `item_ids` (a new object, or an overwritten one), and still the
        ones of `still` it held before (items whose lines were refused this time); returns the items it held
        before and no object holds now: an overwrite that dropped an item deletes it."""
        with self._tx() as conn:
            before = {
                r[0] for r in conn.execute("SELECT item_id FROM object_items WHERE object_key = ?", (object_key,))
            }
            item_ids = [*item_ids, *(i for i in still if i in before)]
            conn.execute("DELETE FROM object_items WHERE object_key = ?", (object_key,))
            conn.executemany(
                "INSERT OR IGNORE INTO object_items (object_key, item_id) VALUES (?, ?)",
                [(object_key, i) for i in item_ids],
            )
            return _orphans(conn, sorted(before - set(item_ids)))

    def forget_object(self, object_key: str) -> list[str]:
        """Forget a removed object; returns the items it held that no other object holds (an item another
        object brought too stays)."""
        with self._tx() as conn:
            rows = conn.execute(
                "DELETE FROM object_items WHERE object_key = ? RETURNING item_id", (object_key,)
            ).fetchall()
            return _orphans(conn, sorted(r[0] for r in rows))


def _orphans(conn: sqlite3.Connection, item_ids: Sequence[str]) -> list[str]:
    """The items among `item_ids` that no object holds any more."""
    held: set[str] = set()
    for start in range(0, len(item_ids), 500):  # SQLite's bound parameters per statement
        chunk = item_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        held |= {r[0] for r in conn.execute(f"SELECT item_id FROM object_items WHERE item_id IN ({marks})", chunk)}
    return [i for i in item_ids if i not in held]
