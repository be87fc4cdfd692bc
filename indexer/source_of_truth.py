"""Raw items in the blob store, the source of truth a reindex rebuilds from. Deleted items are tombstones."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import quote, unquote

from services.core.storage import BlobStore

_PREFIX = "items/"


@dataclass(frozen=True)
class SourceRecord:
    item_id: str
    version: int
    deleted: bool
    item: dict[str, Any] | None


class SourceOfTruth:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    @staticmethod
    def _key(item_id: str) -> str:
        return f"{_PREFIX}{quote(item_id, safe='')}.json"

    def put(self, record: SourceRecord) -> None:
        self.put_many([record])

    def put_many(self, records: Sequence[SourceRecord]) -> None:
        """All of them written when this returns (side by side on S3); on a failure, some may be."""
        self._blobs.put_many([(self._key(r.item_id), self._body(r)) for r in records])

    @staticmethod
    def _body(record: SourceRecord) -> bytes:
        body = {"id": record.item_id, "version": record.version, "deleted": record.deleted, "item": record.item}
        return json.dumps(body, ensure_ascii=False).encode()

    def get(self, item_id: str) -> SourceRecord | None:
        data = self._blobs.get(self._key(item_id))
        return None if data is None else self._record(data)

    def scan(self, chunk: int = 256) -> Iterator[SourceRecord]:
        """Every record, read `chunk` at a time (side by side on S3)."""
        keys = self._blobs.list(_PREFIX)
        while batch := list(islice(keys, chunk)):
            for data in self._blobs.get_many(batch):
                if data is not None:  # deleted since it was listed
                    yield self._record(data)

    @staticmethod
    def _record(data: bytes) -> SourceRecord:
        body = json.loads(data)
        return SourceRecord(body["id"], body["version"], body["deleted"], body["item"])

    @staticmethod
    def item_id_of(key: str) -> str:
        return unquote(key.removeprefix(_PREFIX).removesuffix(".json"))
