"""Ingestion semantics, in process: order safety, idempotency, tombstones, no needless re-embedding, DLQ."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.events import parse_events
from indexer.ledger import EventLedger, EventState
from indexer.pipeline import IngestPipeline
from indexer.runtime import ensure_live_version
from indexer.service import to_new_event
from indexer.settings import IndexerSettings
from indexer.source_of_truth import SourceOfTruth
from services.core.embedding import SentenceTransformerEmbedder, Vectors
from services.core.engines.embedded import EmbeddedEngine
from services.core.storage import LocalBlobStore

pytestmark = pytest.mark.unit


class CountingEmbedder:
    """The real model, counting the texts it embeds."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.texts = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(IndexerSettings().embedding)


class Harness:
    def __init__(self, root: Path, model: SentenceTransformerEmbedder) -> None:
        self.settings = IndexerSettings(data_dir=root)
        self.ledger = EventLedger(root / "ledger.sqlite")
        self.engine = EmbeddedEngine(self.settings)
        self.embedder = CountingEmbedder(model)
        self.source = SourceOfTruth(LocalBlobStore(root / "blobs"))
        ensure_live_version(self.engine, "items", self.embedder)
        self.pipeline = IngestPipeline(self.settings, self.ledger, self.engine, self.embedder, self.source)

    def send(self, *events: dict[str, Any]) -> list[str]:
        good, bad = parse_events(list(events))
        assert not bad, bad
        recorded = self.ledger.append([to_new_event(ev, "test") for _, ev in good])
        return [r.event_id for r in recorded]

    def run(self) -> None:
        while batch := self.ledger.claim(100, lease_s=60):
            self.pipeline.process(batch)

    def title(self, item_id: str) -> str | None:
        got = self.engine.get("items", [item_id])
        return got[0].item.title if got else None


@pytest.fixture
def h(tmp_path: Path, model: SentenceTransformerEmbedder) -> Iterator[Harness]:
    harness = Harness(tmp_path, model)
    yield harness
    harness.engine.close()


def up(item_id: str, title: str, version: int | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"op": "upsert", "item": {"id": item_id, "title": title, **fields}}
    if version is not None:
        event["version"] = version
    return event


def test_an_older_version_after_a_newer_one_changes_nothing(h: Harness) -> None:
    h.send(up("a", "Second", 2))
    h.run()
    (late,) = h.send(up("a", "First", 1))
    h.run()
    assert h.title("a") == "Second"
    got = h.ledger.get(late)
    assert got is not None and got.state is EventState.SUPERSEDED
    assert got.error == "version 1 is not newer than the item's applied version 2"  # said, not silent


def test_versions_in_one_batch_apply_in_order_whatever_the_arrival(h: Harness) -> None:
    three, one, patch, two = h.send(
        up("a", "Three", 3),
        up("a", "One", 1),
        {"op": "patch", "id": "a", "fields": {"brand": "B"}, "version": 4},
        up("a", "Two", 2),
    )
    h.run()
    (got,) = h.engine.get("items", ["a"])
    assert got.item.title == "Three" and got.item.brand == "B" and got.item.version == 4
    # what was served: Three, patched; One and Two were replaced in the batch, as they would have been later
    states = {e: h.ledger.get(e).state for e in (three, one, patch, two)}  # type: ignore[union-attr]
    assert states == {
        three: EventState.INDEXED,
        one: EventState.SUPERSEDED,
        patch: EventState.INDEXED,
        two: EventState.SUPERSEDED,
    }
    assert h.ledger.get(two).error == "replaced in the same batch by version 3 (upsert)"  # type: ignore[union-attr]


def test_a_replayed_event_changes_nothing_and_unchanged_content_is_not_re_embedded(h: Harness) -> None:
    h.send(up("a", "Alien", 5))
    h.run()
    assert h.embedder.texts == 1
    (replay,) = h.send(up("a", "Alien", 5))
    h.send(up("a", "Alien", 6))  # newer version, same content
    h.run()
    assert h.embedder.texts == 1
    assert h.ledger.get(replay).state is EventState.SUPERSEDED  # type: ignore[union-attr]
    h.send(up("a", "Aliens", 7))
    h.run()
    assert h.embedder.texts == 2 and h.title("a") == "Aliens"


def test_a_delete_is_a_tombstone_a_late_older_upsert_cannot_undo(h: Harness) -> None:
    h.send(up("a", "Alien", 1))
    h.run()
    h.send({"op": "delete", "id": "a", "version": 3})
    h.run()
    assert h.title("a") is None
    h.send(up("a", "Alien resurrected", 2))
    h.run()
    assert h.title("a") is None
    record = h.source.get("a")
    assert record is not None and record.deleted and record.version == 3
    h.send(up("a", "Alien returns", 4))  # a newer version may bring it back
    h.run()
    assert h.title("a") == "Alien returns"


def test_patch_merges_fields_and_writes_the_source_of_truth_first(h: Harness) -> None:
    h.send(up("a", "Alien", 1, tags=["space"], price=3.0))
    h.send({"op": "patch", "id": "a", "fields": {"price": 4.5}, "version": 2})
    h.run()
    (got,) = h.engine.get("items", ["a"])
    assert got.item.price == 4.5 and got.item.tags == ["space"] and got.item.title == "Alien"
    record = h.source.get("a")
    assert record is not None and record.item is not None and record.item["price"] == 4.5


def test_server_assigned_versions_keep_arrival_order(h: Harness) -> None:
    h.send(up("a", "First"))
    h.send(up("a", "Second"))
    h.run()
    assert h.title("a") == "Second"


def test_a_poison_event_is_dead_lettered_and_replayable_once_fixed(h: Harness) -> None:
    patch, good = h.send({"op": "patch", "id": "later", "fields": {"title": "Patched"}, "version": 5}, up("b", "Fine"))
    h.run()
    dead = h.ledger.get(patch)
    assert dead is not None and dead.state is EventState.DEAD and "does not exist" in (dead.error or "")
    assert h.ledger.get(good).state is EventState.INDEXED  # type: ignore[union-attr]
    h.send(up("later", "Original", 1))  # the cause is fixed
    h.run()
    assert h.ledger.replay([patch]) == 1
    h.run()
    assert h.ledger.get(patch).state is EventState.INDEXED  # type: ignore[union-attr]
    assert h.title("later") == "Patched"


def test_an_engine_that_is_down_pauses_the_batch_without_losing_it(h: Harness, monkeypatch: Any) -> None:
    from services.core.errors import TransientEngineError

    (eid,) = h.send(up("a", "Alien"))

    def down(*_: Any, **__: Any) -> Any:
        raise TransientEngineError("engine down")

    monkeypatch.setattr(h.engine, "upsert", down)
    report = h.pipeline.process(h.ledger.claim(10, lease_s=60))
    assert report.transient_error and h.ledger.get(eid).state is EventState.QUEUED  # type: ignore[union-attr]
    assert h.ledger.get(eid).attempts == 0  # type: ignore[union-attr]
    monkeypatch.undo()
    h.ledger._conn().execute("UPDATE events SET available_at = 0")  # skip the backoff
    h.run()
    assert h.title("a") == "Alien"


def test_an_unexpected_failure_is_isolated_to_its_event(h: Harness, monkeypatch: Any) -> None:
    ids = h.send(*[up(f"i{n}", f"Item {n}") for n in range(6)])
    real = h.embedder.embed

    def explode(texts: Sequence[str]) -> Vectors:
        if any("Item 3" in t for t in texts):
            raise RuntimeError("tokenizer crashed")
        return real(texts)

    monkeypatch.setattr(h.embedder, "embed", explode)
    for _ in range(h.settings.pipeline.max_attempts):
        h.ledger._conn().execute("UPDATE events SET available_at = 0")
        h.run()
    states = h.ledger.states_of(ids)
    assert states[ids[3]] is EventState.DEAD
    assert all(states[i] is EventState.INDEXED for n, i in enumerate(ids) if n != 3)
    assert "tokenizer crashed" in (h.ledger.get(ids[3]).error or "")  # type: ignore[union-attr]
    assert np.isfinite(h.engine.get("items", ["i0"], with_vectors=True)[0].vector).all()  # type: ignore[arg-type]


def test_expired_leases_return_to_the_queue(h: Harness) -> None:
    (eid,) = h.send(up("a", "Alien"))
    assert h.ledger.claim(10, lease_s=-1)  # a worker claims it, then vanishes
    assert h.ledger.claim(10, lease_s=60) == []
    assert h.ledger.expire_leases() == 1
    h.run()
    assert h.ledger.get(eid).state is EventState.INDEXED  # type: ignore[union-attr]
