"""Raw items in the blob store, the source of truth a reindex rebuilds from. Deleted items are tombstones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
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
        body = {
            "id": record.item_id,
            "version": record.version,
            "deleted": record.deleted,
            "item": record.item,
        }
        self._blobs.put(self._key(record.item_id), json.dumps(body, ensure_ascii=False).encode())

    def get(self, item_id: str) -> SourceRecord | None:
        data = self._blobs.get(self._key(item_id))
        return None if data is None else self._record(data)

    def scan(self) -> Iterator[SourceRecord]:
        for key in self._blobs.list(_PREFIX):
            data = self._blobs.get(key)
            if data is not None:
                yield self._record(data)

    @staticmethod
    def _record(data: bytes) -> SourceRecord:
        body = json.loads(data)
        return SourceRecord(body["id"], body["version"], body["deleted"], body["item"])

    @staticmethod
    def item_id_of(key: str) -> str:
        return unquote(key.removeprefix(_PREFIX).removesuffix(".json"))
