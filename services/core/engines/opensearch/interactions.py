"""Interactions in OpenSearch: the `InteractionStore` of the stack (services/recs/interactions.py has the role and
the SQLite store of the embedded default; both pass tests/contract/test_interaction_stores.py).

Two indices:
  `<index>`         one document per interaction: what training, analytics and `scan` read.
  `<index>-recent`  one document per user (its id a hash of the user id): the user's last RECENT_PER_USER
                    interactions, appended by a script in the same `record` call, before the interactions.
Why two: a recommendation right after a click must already leave the clicked item out, but a search sees a
document only after the index's next refresh. Waiting for it (`refresh=wait_for`) made every
`POST /v1/events/interactions` take about a second (958 ms at p50 on the local node) and held an API
thread for all of it. A GET by id is real-time, so `history` and `interacted_items` read the user's
document, together with a search of the interactions, which holds everything but what the last refresh
interval wrote, and that is among the user's last RECENT_PER_USER recorded. The search is left out when
the document holds the user's whole history: it was never trimmed, and the user index was created with an
empty interactions index (`_meta.holds_every_interaction`; one added beside an existing index does not).

The user's document is written first: when the interactions' write fails after it, the client gets an error
while reads already show the interactions (a resent batch may then show twice), rather than the other way
round, where a user's document that claims to be whole would hide them for good. `scan` and `count` refresh
the interactions index first (batch jobs), and so does a `record` that trimmed a document in the same call.

`seq` is a per-process monotonic number (nanoseconds since the epoch at recording), so that interactions
with equal timestamps keep their recording order; `event_id` (random) breaks the remaining ties so that
paging never skips or repeats a document.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from opensearchpy.exceptions import RequestError

from services.core.engines.opensearch.client import RETRYABLE_STATUS, Retrier, build_client
from services.core.errors import EngineError, TransientEngineError
from services.core.settings import OpenSearchSettings
from services.recs.interactions import Interaction, InteractionType, UserInteractions, check_batch, from_epoch

PAGE = 10_000  # OpenSearch's max_result_window: the most one search may return
# Interactions kept on a user's document. Reads stay exact while no user records more than this within one
# refresh interval (1 s by default); a document takes ~250 bytes per interaction, and each append rewrites it.
RECENT_PER_USER = 500
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


def recent_index_body(settings: OpenSearchSettings, *, holds_every_interaction: bool) -> dict[str, Any]:
    return {
        "settings": {"index": {"number_of_shards": settings.shards, "number_of_replicas": settings.replicas}},
        "mappings": {
            "_meta": {"holds_every_interaction": holds_every_interaction},
            "dynamic": "strict",
            "properties": {
                "user_id": {"type": "keyword"},
                "trimmed": {"type": "boolean"},  # true once older interactions were dropped from `events`
                "events": {"type": "object", "enabled": False},  # kept in the source, never searched
            },
        },
    }


# Appends the events not yet on the document (a resent batch adds nothing), in recording order, and keeps the
# last `keep` appended: the ones a search may not see yet are the latest written, whatever their timestamps.
_APPEND = """
def held = new HashSet();
for (def e : ctx._source.events) { held.add(e.event_id); }
for (def e : params.events) { if (!held.contains(e.event_id)) { ctx._source.events.add(e); } }
int n = ctx._source.events.size();
if (n > params.keep) {
  ctx._source.events = new ArrayList(ctx._source.events.subList(n - params.keep, n));
  ctx._source.trimmed = true;
}
"""


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
    """Interactions in one OpenSearch index and their users' recent ones in a second, both created on first use.
    Safe to share between threads."""

    def __init__(
        self,
        settings: OpenSearchSettings,
        index: str,
        *,
        recent_per_user: int = RECENT_PER_USER,
        wait_for_refresh: bool = False,
    ) -> None:
        """`wait_for_refresh`: `record` returns once its interactions are searchable in the interactions index,
        as it did before the user documents existed, for a reader of that index itself; each call then waits
        for the index's next refresh (up to its interval, 1 s by default)."""
        if recent_per_user < 1:
            raise ValueError("recent_per_user must be >= 1")
        self._settings = settings
        self._bulk_params = {"refresh": "wait_for"} if wait_for_refresh else {}
        self._index = index
        self._recent = f"{index}-recent"
        self._keep = recent_per_user
        self._client = build_client(settings)
        self._retry = Retrier(settings)
        fresh = self._ensure_index(self._index, interactions_index_body(settings))
        self._ensure_index(self._recent, recent_index_body(settings, holds_every_interaction=fresh))
        mapping = self._retry(lambda: self._client.indices.get_mapping(index=self._recent))
        meta = mapping[self._recent]["mappings"].get("_meta", {})
        self._whole = bool(meta.get("holds_every_interaction", False))

    @property
    def index(self) -> str:
        return self._index

    def _ensure_index(self, index: str, body: dict[str, Any]) -> bool:
        """Create `index` unless it exists; True when this call created it."""
        if self._retry(lambda: self._client.indices.exists(index=index)):
            return False
        created = True
        try:
            self._retry(lambda: self._client.indices.create(index=index, body=body))
        except RequestError as exc:  # another process (the API beside a worker) created it first
            if "resource_already_exists" not in str(exc.error):
                raise
            created = False
        self._retry(lambda: self._client.cluster.health(index=index, wait_for_status="yellow"))
        return created

    # ---- writing ---------------------------------------------------------------------------------------

    def record(self, interactions: Sequence[Interaction]) -> int:
        check_batch(interactions)
        if not interactions:
            return 0
        first = _SEQ.take(len(interactions))
        docs: dict[str, dict[str, Any]] = {}
        for n, i in enumerate(interactions):
            event_id = uuid.uuid4().hex
            docs[event_id] = {
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
        by_user: dict[str, list[dict[str, Any]]] = {}
        for doc in docs.values():
            by_user.setdefault(user_key(doc["user_id"]), []).append(doc)
        # 409: the script lost the race for a user's document more often than its retry_on_conflict allows;
        # resending is safe, the script skips the events the document holds
        appends = partial(self._append_ops, by_user)
        self._write(appends, set(by_user), "users' recent interactions", transient=frozenset({409}))
        # fixed ids: resent, not doubled; only this write waits for a refresh when the store was asked to
        self._write(partial(self._index_ops, docs), set(docs), "interactions", params=self._bulk_params)
        if any(len(events) > self._keep for events in by_user.values()):
            self._refresh()  # a document dropped some of this call's own interactions: make them searchable
        return len(interactions)

    def _write(
        self,
        ops: Callable[[set[str]], list[dict[str, Any]]],
        ids: set[str],
        what: str,
        transient: frozenset[int] = frozenset(),
        params: dict[str, str] | None = None,
    ) -> None:
        """One bulk request of `ops(pending)`, the part rejected with a retryable status (or one of `transient`)
        resent after a pause; other rejections raise."""
        pending = ids
        attempts = self._settings.max_retries + 1
        for attempt in range(attempts):
            body = ops(pending)
            response = self._retry(partial(self._client.bulk, body=body, params=params or {}))
            pending = self._rejected(response, transient)
            if not pending:
                return
            if attempt < attempts - 1:
                time.sleep(self._retry.delay(attempt))
        raise TransientEngineError(f"OpenSearch rejected {len(pending)} {what} after {attempts} attempts")

    def _index_ops(self, docs: dict[str, dict[str, Any]], pending: set[str]) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = []
        for event_id in pending:
            body.append({"index": {"_index": self._index, "_id": event_id}})
            body.append(docs[event_id])
        return body

    def _append_ops(self, by_user: dict[str, list[dict[str, Any]]], pending: set[str]) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = []
        for key in pending:
            events = by_user[key]
            # retry_on_conflict: two API processes appending for one user at once; the script runs again
            body.append({"update": {"_index": self._recent, "_id": key, "retry_on_conflict": 10}})
            script = {"source": _APPEND, "lang": "painless", "params": {"events": events, "keep": self._keep}}
            user_id = events[0]["user_id"]
            first = {"user_id": user_id, "trimmed": len(events) > self._keep, "events": events[-self._keep :]}
            body.append({"script": script, "upsert": first})
        return body

    @staticmethod
    def _rejected(response: dict[str, Any], transient: frozenset[int]) -> set[str]:
        """The ids a bulk response rejected for a transient reason. Other rejections raise."""
        if not response.get("errors"):
            return set()
        again: set[str] = set()
        for entry in response["items"]:
            result = next(iter(entry.values()))
            if result.get("error") is None:
                continue
            status = int(result.get("status", 0))
            if status not in RETRYABLE_STATUS and status not in transient:
                raise EngineError(f"OpenSearch rejected interaction write {result['_id']}: {result['error']}")
            again.add(result["_id"])
        return again

    # ---- reading ---------------------------------------------------------------------------------------

    def _recent_of(self, user_id: str) -> tuple[list[dict[str, Any]], bool]:
        """The user's document (a real-time GET): their last interactions as recorded, and whether they are all
        of them (never trimmed, in a user index that has held every interaction from the start)."""
        found = self._retry(partial(self._client.get, index=self._recent, id=user_key(user_id), ignore=[404]))
        if not found.get("found"):
            if "error" in found:  # the user index itself is gone: no read may pass for a user without history
                raise EngineError(f"interactions: the index {self._recent} is missing: {found['error']}")
            return [], self._whole
        source = found["_source"]
        return list(source.get("events", [])), self._whole and not source.get("trimmed", False)

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
        kinds = _kinds(types)  # once: `types` may be an iterator
        query = self._query(user_id, types=kinds, until=until)
        if query is None or limit <= 0:
            return []
        return self._history(query, self._recent_of(user_id), kinds, until, limit)

    def interacted_items(self, user_id: str, *, types: Iterable[InteractionType] | None = None) -> set[str]:
        kinds = _kinds(types)
        query = self._query(user_id, types=kinds)
        if query is None:
            return set()
        return self._items(query, self._recent_of(user_id), kinds)

    def user_interactions(
        self,
        user_id: str,
        *,
        limit: int,
        until: datetime | None = None,
        types: Iterable[InteractionType] | None = None,
    ) -> UserInteractions:
        kinds = _kinds(types)
        query = self._query(user_id, types=kinds)
        if query is None:
            return UserInteractions([], set())
        recent = self._recent_of(user_id)  # one GET for both answers
        history: list[Interaction] = []
        if limit > 0:
            in_time = self._query(user_id, types=kinds, until=until)
            assert in_time is not None
            history = self._history(in_time, recent, kinds, until, limit)
        return UserInteractions(history, self._items(query, recent, kinds))

    def _history(
        self,
        query: dict[str, Any],
        recent: tuple[list[dict[str, Any]], bool],
        kinds: frozenset[InteractionType] | None,
        until: datetime | None,
        limit: int,
    ) -> list[Interaction]:
        held, complete = recent
        docs = {d["event_id"]: d for d in held if _matches(d, kinds, until)}
        if not complete:  # older ones live only in the interactions index, which holds all but the newest
            seen = 0
            for page in self._pages(query, _SORT_DESC, min(limit, PAGE)):
                docs.update((d["event_id"], d) for d in page)
                seen += len(page)
                if seen >= limit:  # the `limit` newest the index can see; the user's document has the rest
                    break
        newest = sorted(docs.values(), key=_order, reverse=True)[:limit]
        return [_source(d) for d in reversed(newest)]

    def _items(
        self, query: dict[str, Any], recent: tuple[list[dict[str, Any]], bool], kinds: frozenset[InteractionType] | None
    ) -> set[str]:
        held, complete = recent
        items = {str(d["item_id"]) for d in held if _matches(d, kinds, None)}
        if complete:
            return items
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
        self._refresh()  # a batch job reads everything recorded before it started
        for docs in self._pages(query, _SORT_ASC, page):
            yield [_source(d) for d in docs]

    def count(self) -> int:
        self._refresh()
        return int(self._retry(lambda: self._client.count(index=self._index))["count"])

    def _refresh(self) -> None:
        self._retry(lambda: self._client.indices.refresh(index=self._index))

    def drop(self) -> None:
        """Delete both indices (tests, and tearing a deployment down)."""
        for index in (self._recent, self._index):  # a drop cut short never leaves a user index claiming all
            self._retry(partial(self._client.indices.delete, index=index, ignore_unavailable=True))

    def close(self) -> None:
        self._client.close()


def user_key(user_id: str) -> str:
    """A user's document id: user ids may run to 256 characters of any script, OpenSearch ids to 512 bytes."""
    return hashlib.sha256(user_id.encode()).hexdigest()


def _order(doc: dict[str, Any]) -> tuple[float, int, str]:
    return float(doc["ts"]), int(doc["seq"]), str(doc["event_id"])


def _kinds(types: Iterable[InteractionType] | None) -> frozenset[InteractionType] | None:
    return None if types is None else frozenset(InteractionType(t) for t in types)


def _matches(doc: dict[str, Any], kinds: frozenset[InteractionType] | None, until: datetime | None) -> bool:
    """What `_query` asks of the index, for a document read by id."""
    if kinds is not None and doc["type"] not in kinds:  # a StrEnum equals its value
        return False
    return until is None or float(doc["ts"]) <= until.timestamp()
