"""The interaction store contract, written once and run against every store: SQLite (the embedded default),
OpenSearch (the stack; a uuid-named index on the real node, skipped when none answers) and in memory."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import EngineError, ValidationError
from services.core.settings import CoreSettings, OpenSearchSettings
from services.recs.interactions import (
    MAX_BATCH,
    InMemoryInteractionStore,
    Interaction,
    InteractionStore,
    InteractionType,
    SQLiteInteractionStore,
    build_interaction_store,
)
from services.recs.settings import RecsSettings

pytestmark = pytest.mark.contract

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Opener = Callable[[], InteractionStore]  # a second handle on the same stored interactions


def ev(
    user: str, item: str, minutes: float, kind: InteractionType = InteractionType.CLICK, **kw: object
) -> Interaction:
    return Interaction(user, item, kind, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("opensearch", marks=pytest.mark.opensearch), "memory"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[InteractionStore] = []
    if request.param == "sqlite":

        def open_store() -> InteractionStore:
            opened.append(SQLiteInteractionStore(tmp_path / "i.sqlite"))
            return opened[-1]
    elif request.param == "opensearch":
        os_settings: OpenSearchSettings = request.getfixturevalue("opensearch_settings")
        index = f"contract-interactions-{uuid.uuid4().hex[:10]}"

        def open_store() -> InteractionStore:
            from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

            opened.append(OpenSearchInteractionStore(os_settings, index))
            return opened[-1]
    else:
        shared = InMemoryInteractionStore()

        def open_store() -> InteractionStore:
            return shared

    yield open_store
    if request.param == "opensearch" and opened:
        from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

        assert isinstance(opened[0], OpenSearchInteractionStore)
        opened[0].drop()
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> InteractionStore:
    return opener()


def test_history_is_the_most_recent_oldest_first_with_ties_in_recording_order(store: InteractionStore) -> None:
    store.record([ev("u", "a", 1), ev("u", "b", 5), ev("u", "c", 5), ev("u", "d", 3), ev("v", "x", 9)])
    store.record([ev("u", "e", 5)])  # a later batch with the same timestamp comes after
    assert [i.item_id for i in store.history("u", limit=10)] == ["a", "d", "b", "c", "e"]
    assert [i.item_id for i in store.history("u", limit=2)] == ["c", "e"]
    assert [i.item_id for i in store.history("u", limit=10, until=T0 + timedelta(minutes=3))] == ["a", "d"]
    assert store.history("nobody", limit=10) == []


def test_every_field_round_trips(store: InteractionStore) -> None:
    bought = ev("u", "bought", 2, InteractionType.PURCHASE, value=19.9, query_id="q1", position=3)
    store.record([bought, ev("u", "plain", 3)])
    first, second = store.history("u", limit=10)
    assert first == bought
    assert (second.value, second.query_id, second.position) == (None, None, None)
    assert first.timestamp == T0 + timedelta(minutes=2) and first.timestamp.tzinfo is not None


def test_history_and_exclusions_can_be_limited_to_types(store: InteractionStore) -> None:
    store.record(
        [
            ev("u", "seen", 1, InteractionType.IMPRESSION),
            ev("u", "bought", 2, InteractionType.PURCHASE),
            ev("u", "bought", 4, InteractionType.CLICK),
        ]
    )
    taste = [InteractionType.CLICK, InteractionType.PURCHASE]
    assert [i.type for i in store.history("u", limit=10, types=taste)] == [
        InteractionType.PURCHASE,
        InteractionType.CLICK,
    ]
    assert store.interacted_items("u", types=taste) == {"bought"}
    assert store.interacted_items("u", types=iter(taste)) == {"bought"}  # any iterable, read once
    assert len(store.history("u", limit=10, types=iter(taste))) == 2
    assert store.interacted_items("u") == {"seen", "bought"}
    assert store.interacted_items("u", types=[]) == set()
    assert store.history("u", limit=10, types=[]) == []
    assert store.interacted_items("nobody") == set()


def test_user_interactions_answers_history_and_interacted_items_in_one_read(store: InteractionStore) -> None:
    store.record(
        [
            ev("u", "seen", 1, InteractionType.IMPRESSION),
            ev("u", "a", 2),
            ev("u", "bought", 3, InteractionType.PURCHASE),
            ev("u", "b", 5),
            ev("u", "a", 6),
            ev("v", "x", 4),
        ]
    )
    taste = [InteractionType.CLICK, InteractionType.PURCHASE]
    until = T0 + timedelta(minutes=3)
    for kinds in (None, taste, []):
        for limit, at in ((10, None), (2, None), (10, until), (0, None)):
            both = store.user_interactions("u", limit=limit, until=at, types=kinds)
            assert both.history == store.history("u", limit=limit, until=at, types=kinds)
            assert both.items == store.interacted_items("u", types=kinds)
    read = store.user_interactions("u", limit=2, until=until, types=iter(taste))  # any iterable, read once
    assert [i.item_id for i in read.history] == ["a", "bought"]
    assert read.items == {"a", "bought", "b"}  # however long ago, and after `until` too: never recommended
    nobody = store.user_interactions("nobody", limit=10)
    assert (nobody.history, nobody.items) == ([], set())


def test_scan_walks_everything_in_time_order_across_batches_with_equal_timestamps(store: InteractionStore) -> None:
    events = [ev(f"u{n % 3}", f"i{n}", minutes=n // 4) for n in range(23)]  # runs of 4 equal timestamps
    store.record(events[::-1][:10])
    store.record(events[::-1][10:])
    batches = list(store.scan(batch_size=3))
    assert all(len(b) <= 3 for b in batches)
    scanned = [i for b in batches for i in b]
    assert len(scanned) == store.count() == 23
    assert sorted(i.item_id for i in scanned) == sorted(e.item_id for e in events)  # none skipped or repeated
    times = [i.timestamp for i in scanned]
    assert times == sorted(times)
    # ties keep recording order: within a minute, the reversed input order
    assert [i.item_id for i in scanned[:4]] == ["i3", "i2", "i1", "i0"]
    since = [i for batch in store.scan(since=T0 + timedelta(minutes=4), batch_size=5) for i in batch]
    assert {i.item_id for i in since} == {f"i{n}" for n in range(16, 23)}


def test_what_is_recorded_is_read_at_once_by_another_handle(opener: Opener) -> None:
    writer, reader = opener(), opener()
    assert writer.record([ev("u", "a", 1), ev("u", "b", 2)]) == 2
    assert [i.item_id for i in reader.history("u", limit=5)] == ["a", "b"]
    assert reader.count() == 2


def test_a_batch_over_the_limit_is_stored_not_at_all(store: InteractionStore) -> None:
    with pytest.raises(ValidationError):
        store.record([ev("u", "a", 1)] * (MAX_BATCH + 1))
    assert store.count() == 0
    assert store.record([]) == 0


def test_the_store_follows_the_engine_setting(tmp_path: Path) -> None:
    recs = RecsSettings()
    embedded = build_interaction_store(CoreSettings(data_dir=tmp_path / "var"), recs)
    try:
        assert isinstance(embedded, SQLiteInteractionStore)
        assert (tmp_path / "var" / "interactions.sqlite").exists()
    finally:
        embedded.close()


@pytest.mark.opensearch
def test_the_stack_keeps_interactions_in_an_index_named_after_the_alias(
    opensearch_settings: OpenSearchSettings,
) -> None:
    from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

    alias = f"contract-{uuid.uuid4().hex[:10]}"
    settings = CoreSettings(engine="opensearch", opensearch=opensearch_settings, index_alias=alias)
    store = build_interaction_store(settings, RecsSettings())
    try:
        assert isinstance(store, OpenSearchInteractionStore)
        assert store.index == f"{alias}-interactions"
        store.record([ev("u", "a", 1)])
        again = build_interaction_store(settings, RecsSettings())  # a second process finds the index there
        assert [i.item_id for i in again.history("u", limit=1)] == ["a"]
        again.close()
    finally:
        store.drop()
        store.close()


@pytest.mark.opensearch
def test_the_stack_reads_a_users_writes_before_any_refresh(opensearch_settings: OpenSearchSettings) -> None:
    """A recommendation right after a click must leave the item out, and recording must not wait for a
    refresh: the user's own document answers reads, with the index for what it no longer holds."""
    from services.core.engines.opensearch.client import build_client
    from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

    store = OpenSearchInteractionStore(
        opensearch_settings, f"contract-interactions-{uuid.uuid4().hex[:10]}", recent_per_user=3
    )
    client = build_client(opensearch_settings)
    try:
        store.record([ev("u", f"old{n}", n) for n in range(5)] + [ev("w", "w0", 1)])  # u's document: 3 of 5
        assert store.count() == 6  # refreshes first, so the six are searchable from here on
        client.indices.put_settings(index=store.index, body={"index": {"refresh_interval": "-1"}})
        # the newest interaction (by time) and one recorded late with an early timestamp
        store.record([ev("u", "new0", 10), ev("u", "new1", 0.5), ev("w", "w1", 2)])
        assert client.count(index=store.index)["count"] == 6  # not searchable yet: no refresh ran

        everything = ["old0", "new1", "old1", "old2", "old3", "old4", "new0"]
        assert [i.item_id for i in store.history("u", limit=10)] == everything
        assert [i.item_id for i in store.history("u", limit=2)] == ["old4", "new0"]
        until = T0 + timedelta(minutes=1)
        assert [i.item_id for i in store.history("u", limit=10, until=until)] == ["old0", "new1", "old1"]
        assert store.interacted_items("u") == set(everything)
        assert store.interacted_items("u", types=[InteractionType.PURCHASE]) == set()
        gets = []
        real_get = store._client.get
        store._client.get = lambda **kw: gets.append(kw["id"]) or real_get(**kw)  # type: ignore[method-assign]
        both = store.user_interactions("u", limit=2, until=until)
        assert len(gets) == 1  # the user's document read once for both answers
        assert [i.item_id for i in both.history] == ["new1", "old1"] and both.items == set(everything)
        store._client.get = real_get  # type: ignore[method-assign]
        assert [i.item_id for i in store.history("w", limit=10)] == ["w0", "w1"]  # never trimmed: its document
        assert store.count() == 9
        client.indices.delete(index=f"{store.index}-recent")  # gone under a running store: an error, not []
        with pytest.raises(EngineError, match="missing"):
            store.history("u", limit=10)
    finally:
        store.drop()
        store.close()
        client.close()


@pytest.mark.opensearch
def test_the_stack_loses_no_interaction_of_one_user_written_from_two_processes_at_once(
    opensearch_settings: OpenSearchSettings,
) -> None:
    import threading

    from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

    index = f"contract-interactions-{uuid.uuid4().hex[:10]}"
    stores = [OpenSearchInteractionStore(opensearch_settings, index) for _ in range(2)]  # two clients
    barrier = threading.Barrier(2)

    def write(n: int) -> None:
        barrier.wait()
        for k in range(15):
            stores[n].record([ev("u", f"p{n}-{k}", k)])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(stores[0].history("u", limit=100)) == 30 and stores[0].count() == 30
        assert stores[1].interacted_items("u") == {f"p{n}-{k}" for n in range(2) for k in range(15)}
    finally:
        stores[0].drop()
        for store in stores:
            store.close()


@pytest.mark.opensearch
def test_the_stack_keeps_reading_interactions_recorded_before_users_had_documents(
    opensearch_settings: OpenSearchSettings,
) -> None:
    """An interactions index written before the per-user documents existed (an upgrade): its users' history
    stays readable, and their new interactions join it."""
    from services.core.engines.opensearch.client import build_client
    from services.core.engines.opensearch.interactions import OpenSearchInteractionStore, interactions_index_body

    index = f"contract-interactions-{uuid.uuid4().hex[:10]}"
    client = build_client(opensearch_settings)
    client.indices.create(index=index, body=interactions_index_body(opensearch_settings))
    for n, item in enumerate(["old0", "old1"]):  # as the store wrote them before
        doc = {"event_id": f"e{n}", "user_id": "u", "item_id": item, "type": "click", "ts": ev("u", item, n).epoch}
        client.index(index=index, id=f"e{n}", body={**doc, "seq": n}, refresh=True)
    store = OpenSearchInteractionStore(opensearch_settings, index)
    try:
        assert [i.item_id for i in store.history("u", limit=10)] == ["old0", "old1"]
        store.record([ev("u", "new", 5)])
        assert [i.item_id for i in store.history("u", limit=10)] == ["old0", "old1", "new"]
        assert store.interacted_items("u") == {"old0", "old1", "new"}
        again = OpenSearchInteractionStore(opensearch_settings, index)  # a second process: the same answer
        assert [i.item_id for i in again.history("u", limit=10)] == ["old0", "old1", "new"]
        again.close()
    finally:
        store.drop()
        store.close()
        client.close()


@pytest.mark.opensearch
def test_the_stack_takes_any_user_id_and_a_batch_longer_than_a_users_document(
    opensearch_settings: OpenSearchSettings,
) -> None:
    from services.core.engines.opensearch.client import build_client
    from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

    store = OpenSearchInteractionStore(
        opensearch_settings, f"contract-interactions-{uuid.uuid4().hex[:10]}", recent_per_user=3
    )
    client = build_client(opensearch_settings)
    try:
        client.indices.put_settings(index=store.index, body={"index": {"refresh_interval": "-1"}})
        emoji = "🎬" * 200  # 800 bytes: longer than an OpenSearch document id may be
        store.record([ev(emoji, "film", 1)])
        assert [i.item_id for i in store.history(emoji, limit=5)] == ["film"]
        # five of one user's interactions in one call, three of them kept on the document: exact at once
        store.record([ev("u", f"i{n}", n) for n in range(5)])
        assert [i.item_id for i in store.history("u", limit=10)] == [f"i{n}" for n in range(5)]
        assert store.interacted_items("u") == {f"i{n}" for n in range(5)}
    finally:
        store.drop()
        store.close()
        client.close()


@pytest.mark.opensearch
def test_the_stack_can_return_only_once_a_write_is_searchable(opensearch_settings: OpenSearchSettings) -> None:
    """For readers of the interactions index itself (analytics): `interactions_wait_for_refresh`."""
    from services.core.engines.opensearch.client import build_client

    alias = f"contract-{uuid.uuid4().hex[:10]}"
    settings = CoreSettings(engine="opensearch", opensearch=opensearch_settings, index_alias=alias)
    store = build_interaction_store(settings, RecsSettings(interactions_wait_for_refresh=True))
    client = build_client(opensearch_settings)
    try:
        index = RecsSettings().interactions_index_name(alias)
        # a refresh every 2 s: a write that did not wait is searchable only after one
        client.indices.put_settings(index=index, body={"index": {"refresh_interval": "2s"}})
        store.record([ev("u", "a", 1), ev("v", "b", 2)])
        assert client.count(index=index)["count"] == 2  # searchable when record returned
    finally:
        store.drop()  # type: ignore[attr-defined]
        store.close()
        client.close()
