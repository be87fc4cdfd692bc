from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import ValidationError
from services.recs.interactions import Interaction, InteractionType, SQLiteInteractionStore

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(
    user: str, item: str, minutes: float, kind: InteractionType = InteractionType.CLICK, **kw: object
) -> Interaction:
    return Interaction(user, item, kind, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


# The behaviour every store shares is checked once for all of them in tests/contract/test_interaction_stores.py.


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


def test_new_interactions_are_checked_when_written_and_older_rows_stay_readable(tmp_path: Path) -> None:
    import sqlite3

    from services.core.errors import ValidationError
    from services.recs.interactions import MAX_POSITION, SQLiteInteractionStore

    store = SQLiteInteractionStore(tmp_path / "i.sqlite")
    at = datetime(2024, 1, 1, tzinfo=UTC)
    for bad, field in (
        (Interaction("u", "i\x00", InteractionType.CLICK, at), "item_id"),
        (Interaction("u", "i", InteractionType.CLICK, at, query_id="q\n"), "query_id"),
        (Interaction("u", "i", InteractionType.CLICK, at, position=MAX_POSITION + 1), "position"),
    ):
        with pytest.raises(ValidationError) as refused:
            store.record([bad])
        assert refused.value.field == field
    # a row written before these checks existed (as the store wrote it then) still reads
    with sqlite3.connect(tmp_path / "i.sqlite") as conn:
        conn.execute(
            "INSERT INTO interactions (user_id, item_id, type, ts, position) VALUES (?, ?, ?, ?, ?)",
            ("u", "old\nid", "click", at.timestamp(), MAX_POSITION + 7),
        )
    assert [(i.item_id, i.position) for i in store.history("u", limit=5)] == [("old\nid", MAX_POSITION + 7)]
    store.close()
