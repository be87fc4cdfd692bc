"""Interactions (what users did with items) and where they are kept.

`InteractionStore` is the role; `SQLiteInteractionStore` keeps them durably on the embedded default (WAL, so
that the periodic job reads while the API writes) and `InMemoryInteractionStore` serves tests and offline
training. On the stack, `OpenSearchInteractionStore` (services/core/engines/opensearch/interactions.py) keeps
them in an index; `build_interaction_store` picks one by the engine setting.

Order matters: interactions with equal timestamps keep the order in which they were recorded (`seq`).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from services.core.domain import MAX_ID_CHARS, has_control_chars
from services.core.errors import ValidationError

if TYPE_CHECKING:
    from services.core.settings import CoreSettings
    from services.recs.settings import RecsSettings

MAX_BATCH = 10_000
# The largest slot a position may name: OpenSearch maps it as an integer (SQLite would take 2**63 - 1).
MAX_POSITION = 2**31 - 1


class InteractionType(StrEnum):
    IMPRESSION = "impression"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    RATING = "rating"


def _check_id(field: str, value: str) -> None:
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise ValidationError(field, f"must be 1 to {MAX_ID_CHARS} characters")


@dataclass(frozen=True)
class Interaction:
    """One event: `user_id` did `type` to `item_id` at `timestamp` (UTC). `value` is the rating for ratings
    (or an amount); `query_id` and `position` say which response and which slot of it the item was shown in."""

    user_id: str
    item_id: str
    type: InteractionType
    timestamp: datetime
    value: float | None = None
    query_id: str | None = None
    position: int | None = None

    def __post_init__(self) -> None:
        _check_id("user_id", self.user_id)
        _check_id("item_id", self.item_id)
        if not isinstance(self.type, InteractionType):
            try:
                object.__setattr__(self, "type", InteractionType(self.type))
            except ValueError:
                kinds = ", ".join(t.value for t in InteractionType)
                raise ValidationError("type", f"must be one of {kinds}") from None
        if self.timestamp.tzinfo is None:
            object.__setattr__(self, "timestamp", self.timestamp.replace(tzinfo=UTC))
        if self.value is not None and not math.isfinite(self.value):
            raise ValidationError("value", "must be a finite number")
        if self.position is not None and self.position < 0:
            raise ValidationError("position", "must be >= 0")
        if self.query_id is not None:
            _check_id("query_id", self.query_id)

    @property
    def epoch(self) -> float:
        return self.timestamp.timestamp()


@dataclass(frozen=True)
class UserInteractions:
    """What a recommendation reads of one user: their most recent interactions, oldest first, and every item
    they interacted with, however long ago (the items to leave out of their answer)."""

    history: list[Interaction]
    items: set[str]


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@runtime_checkable
class InteractionStore(Protocol):
    """Durable interactions: written in batches, read as a user's recent history or all in time order."""

    def record(self, interactions: Sequence[Interaction]) -> int:
        """Store a batch; returns how many were stored. Stored means visible to the next read. SQLite stores
        all or nothing; OpenSearch all or raises, and never duplicates what it resends."""
        ...

    def history(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> list[Interaction]:
        """The user's `limit` most recent interactions (up to and including `until` when given), oldest first."""
        ...

    def interacted_items(self, user_id: str, *, types: Iterable[InteractionType] | None = None) -> set[str]:
        """Every item the user interacted with (of the given types), however long ago."""
        ...

    def user_interactions(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> UserInteractions:
        """`history` and `interacted_items` of one user in one read where the store can: one snapshot of the
        SQLite file, one real-time GET of the user's document on OpenSearch (a recommendation needs both)."""
        ...

    def scan(self, *, since: datetime | None = None, batch_size: int = 10_000) -> Iterator[list[Interaction]]:
        """All interactions (at or after `since`) in time order, ties in recording order, in batches."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def check_batch(interactions: Sequence[Interaction]) -> None:
    if len(interactions) > MAX_BATCH:
        raise ValidationError("interactions", f"at most {MAX_BATCH} per batch")
    for i in interactions:
        check_new(i)


def check_new(interaction: Interaction) -> None:
    """What a new interaction must also meet before it is stored. Checked when written, not in `Interaction`
    itself: rows stored before these checks existed stay readable."""
    i = interaction
    if i.position is not None and i.position > MAX_POSITION:
        raise ValidationError("position", f"must be between 0 and {MAX_POSITION}")
    for field, value in (("user_id", i.user_id), ("item_id", i.item_id), ("query_id", i.query_id)):
        if value is not None and has_control_chars(value):  # a NUL or a newline in an id breaks logs and joins
            raise ValidationError(field, "must not contain control characters")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    value REAL,
    query_id TEXT,
    position INTEGER
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user_id, ts, seq);
CREATE INDEX IF NOT EXISTS interactions_time ON interactions (ts, seq);
"""

_COLUMNS = "user_id, item_id, type, ts, value, query_id, position"


def _row(row: tuple[str, str, str, float, float | None, str | None, int | None]) -> Interaction:
    return Interaction(row[0], row[1], InteractionType(row[2]), from_epoch(row[3]), row[4], row[5], row[6])


def _types_clause(types: Iterable[InteractionType] | None) -> tuple[str, list[str]]:
    if types is None:
        return "", []
    chosen = [InteractionType(t).value for t in types]
    if not chosen:
        return " AND 0", []
    return f" AND type IN ({', '.join('?' * len(chosen))})", chosen


class SQLiteInteractionStore:
    """Interactions in one SQLite file (WAL). Safe to share between threads; other processes may read."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
            self._conn.executescript(_SCHEMA)

    def record(self, interactions: Sequence[Interaction]) -> int:
        check_batch(interactions)
        rows = [(i.user_id, i.item_id, i.type.value, i.epoch, i.value, i.query_id, i.position) for i in interactions]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(f"INSERT INTO interactions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(rows)

    def history(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> list[Interaction]:
        with self._lock:
            return self._history(user_id, limit, until, _types_clause(types))

    def interacted_items(self, user_id: str, *, types: Iterable[InteractionType] | None = None) -> set[str]:
        with self._lock:
            return self._items(user_id, _types_clause(types))

    def user_interactions(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> UserInteractions:
        kinds = _types_clause(types)  # once: `types` may be an iterator
        with self._lock:
            # one read transaction: both answers from the same snapshot, even while a worker writes
            self._conn.execute("BEGIN")
            try:
                return UserInteractions(self._history(user_id, limit, until, kinds), self._items(user_id, kinds))
            finally:
                self._conn.execute("COMMIT")

    def _history(
        self, user_id: str, limit: int, until: datetime | None, kinds: tuple[str, list[str]]
    ) -> list[Interaction]:
        clause, args = kinds
        params: list[object] = [user_id, *args]
        if until is not None:
            clause += " AND ts <= ?"
            params.append(until.timestamp())
        params.append(limit)
        query = f"SELECT {_COLUMNS} FROM interactions WHERE user_id = ?{clause} ORDER BY ts DESC, seq DESC LIMIT ?"
        rows = self._conn.execute(query, params).fetchall()
        return [_row(r) for r in reversed(rows)]

    def _items(self, user_id: str, kinds: tuple[str, list[str]]) -> set[str]:
        clause, args = kinds
        rows = self._conn.execute(
            f"SELECT DISTINCT item_id FROM interactions WHERE user_id = ?{clause}", [user_id, *args]
        ).fetchall()
        return {r[0] for r in rows}

    def scan(self, *, since: datetime | None = None, batch_size: int = 10_000) -> Iterator[list[Interaction]]:
        # Keyset pagination on (ts, seq): each page is its own short read, so writers are never held up.
        last_ts = -math.inf if since is None else since.timestamp()
        last_seq = -1
        first = True
        while True:
            op = ">=" if first else ">"
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS}, seq FROM interactions WHERE (ts > ? OR (ts = ? AND seq {op} ?)) "
                    "ORDER BY ts, seq LIMIT ?",
                    (last_ts, last_ts, last_seq, batch_size),
                ).fetchall()
            if not rows:
                return
            first = False
            last_ts, last_seq = rows[-1][3], rows[-1][7]
            yield [_row(r[:7]) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM interactions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class InMemoryInteractionStore:
    """The same contract over lists in memory: for tests and offline training on a snapshot."""

    def __init__(self, interactions: Iterable[Interaction] = ()) -> None:
        self._all: list[tuple[float, int, Interaction]] = []
        self._by_user: dict[str, list[tuple[float, int, Interaction]]] = {}
        self._lock = threading.Lock()
        self._sorted = True
        self._add(list(interactions))

    def _add(self, interactions: Sequence[Interaction]) -> None:
        with self._lock:
            start = len(self._all)
            for n, i in enumerate(interactions):
                entry = (i.epoch, start + n, i)
                if self._all and entry[:2] < self._all[-1][:2]:
                    self._sorted = False
                self._all.append(entry)
                self._by_user.setdefault(i.user_id, []).append(entry)

    def _sort(self) -> None:
        with self._lock:
            if not self._sorted:
                self._all.sort(key=lambda e: (e[0], e[1]))
                for entries in self._by_user.values():
                    entries.sort(key=lambda e: (e[0], e[1]))
                self._sorted = True

    def record(self, interactions: Sequence[Interaction]) -> int:
        check_batch(interactions)
        self._add(interactions)
        return len(interactions)

    def history(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> list[Interaction]:
        self._sort()
        chosen = None if types is None else {InteractionType(t) for t in types}
        cutoff = math.inf if until is None else until.timestamp()
        out: list[Interaction] = []
        for ts, _, i in reversed(self._by_user.get(user_id, [])):
            if len(out) >= limit:
                break
            if ts <= cutoff and (chosen is None or i.type in chosen):
                out.append(i)
        return out[::-1]

    def interacted_items(self, user_id: str, *, types: Iterable[InteractionType] | None = None) -> set[str]:
        chosen = None if types is None else {InteractionType(t) for t in types}
        return {e[2].item_id for e in self._by_user.get(user_id, []) if chosen is None or e[2].type in chosen}

    def user_interactions(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> UserInteractions:
        kinds = None if types is None else list(types)
        return UserInteractions(
            self.history(user_id, limit=limit, until=until, types=kinds), self.interacted_items(user_id, types=kinds)
        )

    def scan(self, *, since: datetime | None = None, batch_size: int = 10_000) -> Iterator[list[Interaction]]:
        self._sort()
        cutoff = -math.inf if since is None else since.timestamp()
        chosen = [e[2] for e in self._all if e[0] >= cutoff]
        for start in range(0, len(chosen), batch_size):
            yield chosen[start : start + batch_size]

    def count(self) -> int:
        return len(self._all)

    def close(self) -> None:
        pass


def all_interactions(store: InteractionStore, *, since: datetime | None = None) -> Iterator[Interaction]:
    for batch in store.scan(since=since):
        yield from batch


def build_interaction_store(settings: CoreSettings, recs: RecsSettings) -> InteractionStore:
    """The store the deployment's engine goes with: an OpenSearch index on the stack (durable and shared by
    every API replica and worker), SQLite under the data dir on the embedded default."""
    if settings.engine == "opensearch":
        from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

        index = recs.interactions_index_name(settings.index_alias)
        return OpenSearchInteractionStore(
            settings.opensearch, index, wait_for_refresh=recs.interactions_wait_for_refresh
        )
    return SQLiteInteractionStore(recs.interactions_path(settings.data_dir))
