"""Interactions in an OpenSearch index: the `InteractionStore` of the stack (services/recs/interactions.py has
the role and the SQLite store of the embedded default; both pass tests/unit/test_recs_interactions.py).

One document per interaction. `record` is one bulk request that returns once the documents are searchable,
`history` a term query on `user_id` sorted by (`ts`, `seq`) descending, `interacted_items` a composite
aggregation, `scan` a `search_after` walk in (`ts`, `seq`) order. `seq` is a per-process monotonic number
(nanoseconds since the epoch at recording), so that interactions with equal timestamps keep their recording
order; `event_id` (random) breaks the remaining ties so that paging never skips or repeats a document.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from opensearchpy.exceptions import RequestError

from services.core.engines.opensearch.client import RETRYABLE_STATUS, Retrier, build_client
from services.core.errors import EngineError, TransientEngineError
from services.core.settings import OpenSearchSettings
from services.recs.interactions import Interaction, InteractionType, check_batch, from_epoch

PAGE = 10_000  # OpenSearch's max_result_window: the most one search may return
_SORT_ASC = [{"ts": "asc"}, {"seq": "asc"}, {"event_id": "asc"}]
_SORT_DESC = [{"ts": "desc"}, {"seq": "desc"}, {"event_id": "desc"}]


def interactions_index_body(settings: OpenSearchSettings) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "settings": {"index": {"number_of_shards": settings.shards, "number_of_replicas": settings.replicas}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "event_id": keyword,
                "user_id": keyword,
                "item_id": keyword,
                "type": keyword,
                "ts": {"type": "double"},  # epoch seconds, as the SQLite store keeps them
                "seq": {"type": "long"},
                "value": {"type": "double"},
                "query_id": keyword,
                "position": {"type": "integer"},
            },
        },
    }


class _Sequence:
    """Per-process recording order: nanoseconds since the epoch, strictly increasing within the process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> int:
        with self._lock:
            start = max(time.time_ns(), self._last + 1)
            self._last = start + n - 1
            return start


_SEQ = _Sequence()


def _source(doc: dict[str, Any]) -> Interaction:
    return Interaction(
        doc["user_id"],
        doc["item_id"],
        InteractionType(doc["type"]),
        from_epoch(doc["ts"]),
        doc.get("value"),
        doc.get("query_id"),
        doc.get("position"),
    )


class OpenSearchInteractionStore:
    """Interactions in one OpenSearch index, created on first use. Safe to share between threads."""

    def __init__(self, settings: OpenSearchSettings, index: str) -> None:
        self._settings = settings
        self._index = index
        self._client = build_client(settings)
        self._retry = Retrier(settings)
        self._ensure_index()

    @property
    def index(self) -> str:
        return self._index

    def _ensure_index(self) -> None:
        if self._retry(lambda: self._client.indices.exists(index=self._index)):
            return
        try:
            self._retry(
                lambda: self._client.indices.create(index=self._index, body=interactions_index_body(self._settings))
            )
        except RequestError as exc:  # another process (the API beside a worker) created it first
            if "resource_already_exists" not in str(exc.error):
                raise
        self._retry(lambda: self._client.cluster.health(index=self._index, wait_for_status="yellow"))

    def record(self, interactions: Sequence[Interaction]) -> int:
        check_batch(interactions)
        if not interactions:
            return 0
        first = _SEQ.take(len(interactions))
        pending: dict[str, dict[str, Any]] = {}
        for n, i in enumerate(interactions):
            event_id = uuid.uuid4().hex
            pending[event_id] = {
                "event_id": event_id,
                "user_id": i.user_id,
                "item_id": i.item_id,
                "type": i.type.value,
                "ts": i.epoch,
                "seq": first + n,
                "value": i.value,
                "query_id": i.query_id,
                "position": i.position,
            }
        # Fixed ids make a resent document overwrite itself: retrying the rejected part never duplicates.
        attempts = self._settings.max_retries + 1
        for attempt in range(attempts):
            rejected = self._bulk(pending)
            if not rejected:
                return len(interactions)
            pending = {event_id: pending[event_id] for event_id in rejected}
            if attempt < attempts - 1:
                time.sleep(self._retry.delay(attempt))
        raise TransientEngineError(f"OpenSearch rejected {len(pending)} interactions after {attempts} attempts")

    def _bulk(self, docs: dict[str, dict[str, Any]]) -> list[str]:
        """Write the documents; returns the ids rejected for a transient reason. Other rejections raise."""
        body: list[dict[str, Any]] = []
        for event_id, doc in docs.items():
            body.append({"index": {"_index": self._index, "_id": event_id}})
            body.append(doc)
        # wait_for: the API records a click and the next recommendation request must already see it.
        response = self._retry(lambda: self._client.bulk(body=body, refresh="wait_for"))
        if not response.get("errors"):
            return []
        transient: list[str] = []
        for entry in response["items"]:
            result = entry["index"]
            if result.get("error") is None:
                continue
            if int(result.get("status", 0)) not in RETRYABLE_STATUS:
                raise EngineError(f"OpenSearch rejected interaction {result['_id']}: {result['error']}")
            transient.append(result["_id"])
        return transient

    def _query(
        self,
        user_id: str | None = None,
        *,
        types: Iterable[InteractionType] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any] | None:
        """The bool query of the arguments; None when it can match nothing (an empty list of types)."""
        clauses: list[dict[str, Any]] = []
        if user_id is not None:
            clauses.append({"term": {"user_id": user_id}})
        if types is not None:
            chosen = [InteractionType(t).value for t in types]
            if not chosen:
                return None
            clauses.append({"terms": {"type": chosen}})
        bounds = {}
        if since is not None:
            bounds["gte"] = since.timestamp()
        if until is not None:
            bounds["lte"] = until.timestamp()
        if bounds:
            clauses.append({"range": {"ts": bounds}})
        return {"bool": {"filter": clauses}}

    def _pages(self, query: dict[str, Any], sort: list[dict[str, str]], page: int) -> Iterator[list[dict[str, Any]]]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": query, "sort": sort, "size": page, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            response = self._retry(partial(self._client.search, index=self._index, body=body))
            if response.get("_shards", {}).get("failed"):
                raise EngineError("interactions search was answered by only some shards")
            hits: list[dict[str, Any]] = response["hits"]["hits"]
            if not hits:
                return
            yield [h["_source"] for h in hits]
            if len(hits) < page:
                return
            after = hits[-1]["sort"]

    def history(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> list[Interaction]:
        query = self._query(user_id, types=types, until=until)
        if query is None or limit <= 0:
            return []
        out: list[Interaction] = []
        for docs in self._pages(query, _SORT_DESC, min(limit, PAGE)):
            out.extend(_source(d) for d in docs[: limit - len(out)])
            if len(out) >= limit:
                break
        return out[::-1]

    def interacted_items(self, user_id: str, *, types: Iterable[InteractionType] | None = None) -> set[str]:
        query = self._query(user_id, types=types)
        if query is None:
            return set()
        items: set[str] = set()
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": 1000, "sources": [{"item": {"terms": {"field": "item_id"}}}]}
            if after is not None:
                composite["after"] = after
            body = {"size": 0, "query": query, "aggs": {"items": {"composite": composite}}}
            response = self._retry(partial(self._client.search, index=self._index, body=body))
            agg = response["aggregations"]["items"]
            items.update(str(bucket["key"]["item"]) for bucket in agg["buckets"])
            after = agg.get("after_key")
            if not agg["buckets"] or after is None:
                return items

    def scan(self, *, since: datetime | None = None, batch_size: int = 10_000) -> Iterator[list[Interaction]]:
        query = self._query(since=since)
        assert query is not None
        page = max(1, min(batch_size, PAGE))
        for docs in self._pages(query, _SORT_ASC, page):
            yield [_source(d) for d in docs]

    def count(self) -> int:
        return int(self._retry(lambda: self._client.count(index=self._index))["count"])

    def drop(self) -> None:
        """Delete the index (tests, and tearing a deployment down)."""
        self._retry(lambda: self._client.indices.delete(index=self._index, ignore_unavailable=True))

    def close(self) -> None:
        self._client.close()
