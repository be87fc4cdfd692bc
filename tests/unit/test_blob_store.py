"""Many blobs at once: an ingestion batch's source-of-truth writes and a rebuild's reads go side by side on S3."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.source_of_truth import SourceOfTruth, SourceRecord
from services.core.settings import BlobSettings
from services.core.storage import BlobStore, LocalBlobStore, S3BlobStore

pytestmark = pytest.mark.unit


class CountingClient:
    """A real boto3 client (on the moto server) with each put_object counted while in flight; a key may be
    made to fail. Only the counting is added: every call reaches the server."""

    def __init__(self, client: Any, fail_key: str | None = None) -> None:
        self._client = client
        self._fail_key = fail_key
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def put_object(self, **kw: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.01)  # a round trip to a region, so that calls meet
            if kw["Key"].endswith(self._fail_key or "\0"):
                raise ConnectionError(f"store unreachable for {kw['Key']}")
            return self._client.put_object(**kw)
        finally:
            with self._lock:
                self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _s3(settings: BlobSettings, **kw: Any) -> tuple[S3BlobStore, CountingClient]:
    store = S3BlobStore(settings)
    store.ensure_bucket()
    counting = CountingClient(store._client, **kw)
    return S3BlobStore(settings, client=counting), counting  # type: ignore[arg-type]


def _round_trip(store: BlobStore) -> None:
    blobs = [(f"items/{i:03d}.json", f"body {i}".encode()) for i in range(40)]
    store.put_many(blobs)
    keys = [k for k, _ in blobs]
    assert store.get_many([*keys[::-1], "items/missing.json"]) == [d for _, d in blobs[::-1]] + [None]
    assert sorted(store.list("items/")) == keys


def test_many_blobs_round_trip_in_order_on_disk(tmp_path: Path) -> None:
    _round_trip(LocalBlobStore(tmp_path / "blobs"))


def test_many_blobs_round_trip_in_order_in_a_bucket(s3_settings: BlobSettings) -> None:
    _round_trip(_s3(s3_settings)[0])


def test_s3_writes_go_side_by_side_up_to_the_concurrency(s3_settings: BlobSettings) -> None:
    store, client = _s3(s3_settings.model_copy(update={"concurrency": 4}))
    store.put_many([(f"k/{i}", b"x") for i in range(24)])
    assert client.most_in_flight == 4
    assert len(list(store.list("k/"))) == 24


def test_a_failed_write_is_raised_after_the_others_are_written(s3_settings: BlobSettings) -> None:
    store, client = _s3(s3_settings, fail_key="k/7")
    with pytest.raises(ConnectionError, match="k/7"):
        store.put_many([(f"k/{i}", b"x") for i in range(16)])
    assert client.in_flight == 0  # nothing still being written once the error is out
    assert sorted(store.list("k/")) == sorted(f"k/{i}" for i in range(16) if i != 7)


def test_the_source_of_truth_scans_every_record_a_chunk_at_a_time(tmp_path: Path) -> None:
    reads: list[int] = []

    class Recording(LocalBlobStore):
        def get_many(self, keys: Any) -> list[bytes | None]:
            reads.append(len(keys))
            return super().get_many(keys)

    source = SourceOfTruth(Recording(tmp_path / "blobs"))
    records = [SourceRecord(f"item/{i}", i, i % 3 == 0, None if i % 3 == 0 else {"id": f"item/{i}"}) for i in range(10)]
    source.put_many(records)
    assert sorted(source.scan(chunk=4), key=lambda r: r.version) == records
    assert reads == [4, 4, 2]
