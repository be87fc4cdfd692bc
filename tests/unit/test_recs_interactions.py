from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import ValidationError
from services.recs.interactions import (
    InMemoryInteractionStore,
    Interaction,
    InteractionStore,
    InteractionType,
    SQLiteInteractionStore,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(
    user: str, item: str, minutes: float, kind: InteractionType = InteractionType.CLICK, **kw: object
) -> Interaction:
    return Interaction(user, item, kind, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InteractionStore]:
    s: InteractionStore = (
        SQLiteInteractionStore(tmp_path / "i.sqlite") if request.param == "sqlite" else InMemoryInteractionStore()
    )
    yield s
    s.close()


def test_history_is_the_most_recent_oldest_first_with_ties_in_recording_order(store: InteractionStore) -> None:
    store.record([ev("u", "a", 1), ev("u", "b", 5), ev("u", "c", 5), ev("u", "d", 3), ev("v", "x", 9)])
    assert [i.item_id for i in store.history("u", limit=10)] == ["a", "d", "b", "c"]
    assert [i.item_id for i in store.history("u", limit=2)] == ["b", "c"]
    assert [i.item_id for i in store.history("u", limit=10, until=T0 + timedelta(minutes=3))] == ["a", "d"]
    assert store.history("nobody", limit=10) == []


def test_history_and_exclusions_can_be_limited_to_types(store: InteractionStore) -> None:
    store.record(
        [
            ev("u", "seen", 1, InteractionType.IMPRESSION),
            ev("u", "bought", 2, InteractionType.PURCHASE, value=19.9, query_id="q1", position=3),
        ]
    )
    taste = [InteractionType.CLICK, InteractionType.PURCHASE]
    (only,) = store.history("u", limit=10, types=taste)
    assert (only.item_id, only.value, only.query_id, only.position) == ("bought", 19.9, "q1", 3)
    assert store.interacted_items("u", types=taste) == {"bought"}
    assert store.interacted_items("u") == {"seen", "bought"}


def test_scan_walks_everything_in_time_order_across_batches_with_equal_timestamps(store: InteractionStore) -> None:
    events = [ev(f"u{n % 3}", f"i{n}", minutes=n // 4) for n in range(23)]  # runs of 4 equal timestamps
    store.record(events[::-1][:10])
    store.record(events[::-1][10:])
    scanned = [i for batch in store.scan(batch_size=3) for i in batch]
    assert len(scanned) == store.count() == 23
    times = [i.timestamp for i in scanned]
    assert times == sorted(times)
    since = [i for batch in store.scan(since=T0 + timedelta(minutes=4), batch_size=5) for i in batch]
    assert {i.item_id for i in since} == {f"i{n}" for n in range(16, 23)}


def test_sqlite_store_is_durable_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    first = SQLiteInteractionStore(path)
    first.record([ev("u", "a", 1, InteractionType.RATING, value=4.0)])
    first.close()
    again = SQLiteInteractionStore(path)
    assert [(i.item_id, i.type, i.value) for i in again.history("u", limit=5)] == [("a", InteractionType.RATING, 4.0)]
    again.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_bad_batch_is_stored_not_at_all(tmp_path: Path) -> None:
    store = SQLiteInteractionStore(tmp_path / "i.sqlite")
    with pytest.raises(ValidationError):
        store.record([ev("u", "a", 1)] * 10_001)
    assert store.count() == 0
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"item_id": "x" * 300}, "item_id"),
        ({"type": "like"}, "type"),
        ({"value": float("nan")}, "value"),
        ({"position": -1}, "position"),
    ],
)
def test_interactions_are_validated(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"user_id": "u", "item_id": "i", "type": "click", "timestamp": T0}
    with pytest.raises(ValidationError) as err:
        Interaction(**(base | kwargs))  # type: ignore[arg-type]
    assert err.value.field == field


def test_types_given_as_strings_and_naive_times_are_normalised() -> None:
    i = Interaction("u", "i", "purchase", datetime(2024, 1, 1))  # type: ignore[arg-type]
    assert i.type is InteractionType.PURCHASE
    assert i.timestamp.tzinfo is UTC
