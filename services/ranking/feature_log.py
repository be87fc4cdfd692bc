"""The feature log: for each served query, the top candidates' features with the query id, so that
interactions reported later against that query id become training rows without re-running the query.

One JSON line per query:

    {"query_id": "...", "ts": "2026-11-28T21:00:00+00:00", "q": "...", "feature_set": "trawl-search@1",
     "features": ["keyword_present", ...], "model": "<model id or null>",
     "items": [{"id": "...", "rank": 1, "fused_rank": 3, "score": 1.2, "values": [1.0, null, ...]}, ...]}

Locally: `<data_dir>/feature-log/<YYYY-MM-DD>.jsonl`, appended. On S3 (which cannot append): one object per
flushed batch, `<prefix><YYYY-MM-DD>/<HHMMSS>-<uuid>.jsonl`. Records are queued and written by a background
thread, so a slow disk or bucket never slows a search; a full queue drops records and counts them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.core.settings import CoreSettings
from services.core.storage import BlobStore, blob_store_for
from services.ranking.settings import FeatureLogSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoggedItem:
    id: str
    rank: int
    fused_rank: int
    score: float
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class FeatureRecord:
    query_id: str
    q: str
    feature_set: str
    features: Sequence[str]
    model: str | None
    items: Sequence[LoggedItem]
    ts: datetime

    def to_json(self) -> str:
        # Rounded and NaN-mapped as one array: per value in Python this took ~7 ms a record, on the GIL that
        # the searches need.
        values = np.round(np.array([list(i.values) for i in self.items], dtype=np.float64), 6)
        rows: list[list[float | None]] = values.tolist() if self.items else []
        for r, c in np.argwhere(np.isnan(values)).tolist():
            rows[r][c] = None
        return json.dumps(
            {
                "query_id": self.query_id,
                "ts": self.ts.isoformat(),
                "q": self.q,
                "feature_set": self.feature_set,
                "features": list(self.features),
                "model": self.model,
                "items": [
                    {
                        "id": i.id,
                        "rank": i.rank,
                        "fused_rank": i.fused_rank,
                        "score": round(i.score, 6),
                        "values": row,
                    }
                    for i, row in zip(self.items, rows, strict=True)
                ],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


class FeatureSink(Protocol):
    """Where batches of JSON lines for one day go."""

    def append(self, day: date, lines: Sequence[str]) -> None: ...

    def days(self) -> list[date]: ...

    def read(self, day: date) -> Iterator[str]: ...


class LocalFeatureSink:
    """One file per day, appended and fsynced per batch."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def append(self, day: date, lines: Sequence[str]) -> None:
        with open(self._folder / f"{day.isoformat()}.jsonl", "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def days(self) -> list[date]:
        return sorted(date.fromisoformat(p.stem) for p in self._folder.glob("????-??-??.jsonl"))

    def read(self, day: date) -> Iterator[str]:
        path = self._folder / f"{day.isoformat()}.jsonl"
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                yield from (line for line in fh if line.strip())


class BlobFeatureSink:
    """One object per batch under a day's prefix (a blob store cannot append)."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store

    def append(self, day: date, lines: Sequence[str]) -> None:
        stamp = datetime.now(UTC).strftime("%H%M%S")
        key = f"{day.isoformat()}/{stamp}-{uuid.uuid4().hex[:12]}.jsonl"
        self._store.put(key, "".join(line + "\n" for line in lines).encode())

    def days(self) -> list[date]:
        found = set()
        for key in self._store.list():
            head = key.split("/", 1)[0]
            try:
                found.add(date.fromisoformat(head))
            except ValueError:
                continue
        return sorted(found)

    def read(self, day: date) -> Iterator[str]:
        for key in sorted(self._store.list(f"{day.isoformat()}/")):
            data = self._store.get(key)
            if data:
                yield from (line for line in data.decode().splitlines() if line.strip())


def build_sink(core: CoreSettings, settings: FeatureLogSettings) -> FeatureSink:
    folder = core.data_dir / "feature-log"
    if settings.store.kind == "s3":  # S3 cannot append: one object per batch, where files take appended lines
        return BlobFeatureSink(blob_store_for(settings.store, folder, create_bucket=True))
    return LocalFeatureSink(folder)


class FeatureLogger:
    """Queues records and writes them from one background thread, in batches per day."""

    def __init__(
        self, sink: FeatureSink, *, flush_every_s: float = 1.0, max_queue: int = 10_000, sample_every: int = 1
    ) -> None:
        if sample_every < 1:
            raise ValueError("sample_every must be >= 1")
        self._sink = sink
        self._sample_every = sample_every
        self._seen = itertools.count()  # next() on a count is atomic under the GIL
        # records, flush markers (set once everything queued before them is written) and None (stop)
        self._queue: queue.Queue[FeatureRecord | threading.Event | None] = queue.Queue(maxsize=max_queue)
        self._flush_every = flush_every_s
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="feature-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether the next query is to be logged: one in `sample_every`, the first one included. Asked
        before the record is built, so a query left out costs nothing."""
        return next(self._seen) % self._sample_every == 0

    def log(self, record: FeatureRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _loop(self) -> None:
        stop = False
        while not stop:
            try:
                batch = [self._queue.get(timeout=self._flush_every)]
            except queue.Empty:
                continue
            while True:  # whatever else is queued now goes in the same batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(x is None for x in batch)
            self._write([x for x in batch if isinstance(x, FeatureRecord)])
            for marker in batch:
                if isinstance(marker, threading.Event):
                    marker.set()

    def _write(self, batch: Sequence[FeatureRecord]) -> None:
        by_day: dict[date, list[str]] = {}
        for record in batch:
            try:
                by_day.setdefault(record.ts.date(), []).append(record.to_json())
            except Exception:  # one bad record is lost, not the thread that writes every later one
                self.failed += 1
                log.exception("feature log: record of query %s not serialised", record.query_id)
        for day, lines in by_day.items():
            try:
                self._sink.append(day, lines)
                self.written += len(lines)
            except Exception:  # a failing store must not kill the thread; the loss is counted and logged
                self.failed += len(lines)
                log.exception("feature log: %d records for %s not written", len(lines), day)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False if that took longer than `timeout`."""
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            log.warning("feature log: queue full at shutdown; %d queued records lost", self._queue.qsize())
        self._thread.join(timeout=10)


def read_records(sink: FeatureSink, days: Sequence[date] | None = None) -> Iterator[dict[str, Any]]:
    """Every logged record of the given days (all days when None), oldest day first."""
    for day in days if days is not None else sink.days():
        for line in sink.read(day):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("feature log %s: a line that is not JSON was skipped", day)
