"""OpenSearch adapter: k-NN indices, BM25, search_as_you_type. OpenSearch DSL and raw hits stay in here."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from opensearchpy import helpers
from opensearchpy.exceptions import NotFoundError

from services.core.domain import FieldKind, Item
from services.core.engines.base import (
    SUGGEST_BRAND_WEIGHT,
    SUGGEST_POPULARITY_WEIGHT,
    BulkResult,
    Document,
    Hit,
    IndexVersion,
    ItemFailure,
    StoredDocument,
    Vector,
    check_alias,
    check_document,
    check_k,
    check_sort_field,
    normalise,
    query_words,
    resolve_boosts,
    suggest_parts,
    version_index_name,
    weighted_words,
)
from services.core.engines.opensearch.client import RETRYABLE_STATUS, Retrier, build_client
from services.core.engines.opensearch.dsl import filter_clause
from services.core.engines.opensearch.mapping import TEXT_FIELD_NAMES, definition_hash, index_body
from services.core.errors import EngineError, IndexNotFoundError, ValidationError
from services.core.filters import Filter
from services.core.settings import CoreSettings

_ENGINE_FIELDS = ("content_hash", "vector", "vector_bytes")
_VECTOR_FIELDS = ["vector", "vector_bytes"]  # left out of every read that does not ask for vectors


def _item(source: dict[str, Any]) -> Item:
    return Item.model_validate({k: v for k, v in source.items() if k not in _ENGINE_FIELDS})


# The fields suggest matches the typed words in, with the share of the score each gets.
_SUGGEST_FIELDS = (("title.sayt", 1.0), ("brand.sayt", SUGGEST_BRAND_WEIGHT))
# The popularity prior of `popularity_prior` (base.py), as the cluster computes it for every match.
_PRIOR_SCRIPT = (
    "_score * (1 + params.w * Math.log1p(doc['popularity'].size() == 0 ? 0 : Math.max(doc['popularity'].value, 0)))"
)


def _has_value(source: dict[str, Any], field: str) -> bool:
    """Whether a source holds a value at a dotted path ("attributes.year")."""
    node: Any = source
    for part in field.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return False
        node = node[part]
    return bool(node != [])


def _unpack(packed: str) -> Vector:
    """A vector from the base64 of its little-endian float32 bytes (the stored `vector_bytes` field)."""
    return np.frombuffer(base64.b64decode(packed), dtype="<f4").astype(np.float32)


def _transient_item(status: int, error: dict[str, Any]) -> bool:
    """Busy nodes, and the short write block of a clone (`clone_version`): both pass if the write waits."""
    if status in RETRYABLE_STATUS:
        return True
    return error.get("type") == "cluster_block_exception" and "index write (api)" in str(error.get("reason", ""))


class OpenSearchEngine:
    def __init__(self, settings: CoreSettings) -> None:
        self._settings = settings.opensearch
        self._schema = settings.catalog
        self._max_terms = settings.max_query_terms
        self._client = build_client(self._settings)
        self._retry = Retrier(self._settings)

    # ---- versions and alias ----------------------------------------------------------------------

    def _name(self, alias: str, version: int | None) -> str:
        return check_alias(alias) if version is None else version_index_name(check_alias(alias), version)

    def _meta_of_all(self, alias: str) -> dict[str, dict[str, Any]]:
        pattern = f"{check_alias(alias)}-v*"
        try:
            found = self._retry(lambda: self._client.indices.get_mapping(index=pattern))
        except NotFoundError:
            return {}
        return {
            name: body["mappings"].get("_meta", {}).get("trawl", {})
            for name, body in found.items()
            if body["mappings"].get("_meta", {}).get("trawl", {}).get("alias") == alias
        }

    def _live_names(self, alias: str) -> list[str]:
        try:
            return list(self._retry(lambda: self._client.indices.get_alias(name=alias)))
        except NotFoundError:
            return []

    def create_version(self, alias: str, *, dimension: int, model_id: str) -> IndexVersion:
        if dimension < 1:
            raise ValidationError("dimension", "must be >= 1")
        numbers = [int(m["version"]) for m in self._meta_of_all(alias).values()]
        number = max(numbers, default=0) + 1
        meta = {
            "alias": alias,
            "version": number,
            "dimension": dimension,
            "model_id": model_id,
            "created_at": datetime.now(UTC).isoformat(),
        }
        body = index_body(self._settings, self._schema, dimension=dimension, meta=meta)
        meta["definition"] = definition_hash(body)  # `meta` is the body's `_meta`: stored with the index
        name = version_index_name(alias, number)
        self._retry(lambda: self._client.indices.create(index=name, body=body))
        self._retry(lambda: self._client.cluster.health(index=name, wait_for_status="yellow"))
        return self._describe(name, meta, live=False)

    def clone_version(self, alias: str, source: int) -> IndexVersion | None:
        """Version N+1 as a clone of `source` (OpenSearch `_clone`: segments, HNSW graphs included, are
        hard-linked, nothing is rebuilt), when the index definition is unchanged; None when it changed or
        cloning is off, and the caller creates an empty version and copies into it.

        The clone needs the source write-blocked. The block lasts about a second; writes that meet it are
        retried by `_bulk` like a busy node's, so ingestion waits instead of failing."""
        metas = self._meta_of_all(alias)
        src = version_index_name(check_alias(alias), source)
        src_meta = metas.get(src)
        if src_meta is None:
            raise IndexNotFoundError(f"{alias} has no version {source}")
        dimension = int(src_meta["dimension"])
        current = definition_hash(index_body(self._settings, self._schema, dimension=dimension, meta={}))
        if not self._settings.reindex_clone or src_meta.get("definition") != current:
            return None
        number = max(int(m["version"]) for m in metas.values()) + 1
        meta = {
            **src_meta,
            "version": number,
            "created_at": datetime.now(UTC).isoformat(),
            "cloned_from": source,
        }
        name = version_index_name(alias, number)
        if self._retry(lambda: self._client.indices.exists(index=name)):
            # Left by an attempt that died mid-clone (its `_meta` still the source's): the job's resume redoes it.
            self._retry(lambda: self._client.indices.delete(index=name))
        blocked = {"index": {"blocks": {"write": True}}}
        self._retry(lambda: self._client.indices.put_settings(index=src, body=blocked))
        try:
            self._retry(lambda: self._client.indices.flush(index=src))
            self._retry(lambda: self._client.indices.clone(index=src, target=name))
        finally:
            unblocked = {"index": {"blocks": {"write": None}}}
            self._retry(lambda: self._client.indices.put_settings(index=src, body=unblocked))
        self._retry(lambda: self._client.cluster.health(index=name, wait_for_status="yellow"))
        # The clone inherits the source's settings (the write block too) and its `_meta`: make them its own.
        self._retry(lambda: self._client.indices.put_settings(index=name, body=unblocked))
        self._retry(lambda: self._client.indices.put_mapping(index=name, body={"_meta": {"trawl": meta}}))
        return self._describe(name, meta, live=False)

    def point_alias(self, alias: str, version: int) -> None:
        target = version_index_name(check_alias(alias), version)
        if not self._retry(lambda: self._client.indices.exists(index=target)):
            raise IndexNotFoundError(f"{alias} has no version {version}")
        actions: list[dict[str, Any]] = [
            {"remove": {"index": n, "alias": alias}} for n in self._live_names(alias) if n != target
        ]
        actions.append({"add": {"index": target, "alias": alias, "is_write_index": True}})
        # One request: OpenSearch applies all actions atomically, so readers never see no alias.
        self._retry(lambda: self._client.indices.update_aliases(body={"actions": actions}))

    def list_versions(self, alias: str) -> list[IndexVersion]:
        live = set(self._live_names(alias))
        metas = self._meta_of_all(alias)
        return sorted((self._describe(n, m, n in live) for n, m in metas.items()), key=lambda v: v.version)

    def live_version(self, alias: str) -> IndexVersion | None:
        names = self._live_names(alias)
        if not names:
            return None
        mapping = self._call(lambda: self._client.indices.get_mapping(index=names[0]))
        meta = mapping[names[0]]["mappings"].get("_meta", {}).get("trawl", {})
        return self._describe(names[0], meta, live=True) if meta.get("alias") == alias else None

    def _describe(self, name: str, meta: dict[str, Any], live: bool) -> IndexVersion:
        count = int(self._retry(lambda: self._client.count(index=name))["count"])
        return IndexVersion(
            alias=meta["alias"],
            version=int(meta["version"]),
            name=name,
            dimension=int(meta["dimension"]),
            model_id=meta["model_id"],
            created_at=datetime.fromisoformat(meta["created_at"]),
            live=live,
            count=count,
            cloned_from=None if meta.get("cloned_from") is None else int(meta["cloned_from"]),
        )

    def drop_version(self, alias: str, version: int) -> None:
        name = version_index_name(check_alias(alias), version)
        if name in self._live_names(alias):
            raise ValidationError(
                "version", f"version {version} is live behind {alias!r}; point the alias elsewhere first"
            )
        try:
            self._retry(lambda: self._client.indices.delete(index=name))
        except NotFoundError as exc:
            raise IndexNotFoundError(f"{alias} has no version {version}") from exc

    def drop_alias(self, alias: str) -> None:
        """Remove the alias and every version behind it (a catalog taken down)."""
        names = list(self._meta_of_all(alias))
        if names:
            self._retry(lambda: self._client.indices.delete(index=",".join(names)))

    def _dimension(self, index: str) -> int:
        mapping = self._call(lambda: self._client.indices.get_mapping(index=index))
        (body,) = mapping.values()
        return int(body["mappings"]["properties"]["vector"]["dimension"])

    def _call(self, fn: Any) -> Any:
        try:
            return self._retry(fn)
        except NotFoundError as exc:
            raise IndexNotFoundError(str(exc)) from exc

    # ---- writes and reads by id --------------------------------------------------------------------

    def upsert(self, alias: str, docs: Sequence[Document], *, version: int | None = None) -> BulkResult:
        index = self._name(alias, version)
        dimension = self._dimension(index)
        result = BulkResult()
        actions: dict[str, dict[str, Any]] = {}
        for doc in docs:
            problem = check_document(doc, dimension)
            if problem:
                result.failed.append(ItemFailure(doc.item.id, problem))
                continue
            vector = normalise(doc.vector).astype("<f4")
            source = doc.item.to_json() | {
                "content_hash": doc.item.content_hash,
                "vector": vector.tolist(),
                "vector_bytes": base64.b64encode(vector.tobytes()).decode("ascii"),
            }
            actions[doc.item.id] = {
                "_op_type": "index",
                "_index": index,
                "_id": doc.item.id,
                "_source": source,
            }
        self._bulk(list(actions.values()), result)
        return result

    def delete(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> BulkResult:
        index = self._name(alias, version)
        result = BulkResult()
        self._bulk([{"_op_type": "delete", "_index": index, "_id": i} for i in dict.fromkeys(ids)], result)
        return result

    def _bulk(self, actions: list[dict[str, Any]], result: BulkResult) -> None:
        """Send in chunks; items rejected as busy (429) are re-sent with backoff, other failures reported."""
        pending = actions
        for attempt in range(self._settings.max_retries + 1):
            retry: list[dict[str, Any]] = []
            for start in range(0, len(pending), self._settings.bulk_chunk):
                chunk = pending[start : start + self._settings.bulk_chunk]
                body = []
                for a in chunk:
                    body.append({a["_op_type"]: {"_index": a["_index"], "_id": a["_id"]}})
                    if a["_op_type"] == "index":
                        body.append(a["_source"])
                response = self._call(lambda body=body: self._client.bulk(body=body))
                for action, entry in zip(chunk, response["items"], strict=True):
                    (outcome,) = entry.values()
                    status = int(outcome.get("status", 500))
                    transient = _transient_item(status, outcome.get("error", {}))
                    if status < 300:
                        result.succeeded.append(action["_id"])
                    elif transient and attempt < self._settings.max_retries:
                        retry.append(action)
                    elif action["_op_type"] == "delete" and status == 404:
                        result.failed.append(ItemFailure(action["_id"], "not found"))
                    else:
                        error = outcome.get("error", {})
                        reason = f"{error.get('type', status)}: {error.get('reason', '')}".strip(": ")
                        result.failed.append(ItemFailure(action["_id"], reason, transient))
            if not retry:
                return
            time.sleep(self._retry.delay(attempt))
            pending = retry

    def get(
        self, alias: str, ids: Sequence[str], *, with_vectors: bool = False, version: int | None = None
    ) -> list[StoredDocument]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        excludes = ["vector_bytes"] if with_vectors else _VECTOR_FIELDS
        index = self._name(alias, version)
        response = self._call(lambda: self._client.mget(index=index, body={"ids": unique}, _source_excludes=excludes))
        return [self._stored(d["_source"]) for d in response["docs"] if d.get("found")]

    def get_vectors(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> dict[str, Vector]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        index = self._name(alias, version)
        response = self._call(
            lambda: self._client.mget(index=index, body={"ids": unique}, stored_fields=["vector_bytes"], _source=False)
        )
        out: dict[str, Vector] = {}
        unpacked: list[str] = []
        for d in response["docs"]:
            if not d.get("found"):
                continue
            packed = d.get("fields", {}).get("vector_bytes")
            if packed:
                out[d["_id"]] = _unpack(packed[0])
            else:
                unpacked.append(d["_id"])
        if unpacked:  # written before versions kept the bytes: read the float array from the source (slow)
            slow = self._call(
                lambda: self._client.mget(index=index, body={"ids": unpacked}, _source_includes=["vector"])
            )
            for d in slow["docs"]:
                if d.get("found") and d.get("_source", {}).get("vector") is not None:
                    out[d["_id"]] = np.asarray(d["_source"]["vector"], dtype=np.float32)
        return out

    @staticmethod
    def _stored(source: dict[str, Any]) -> StoredDocument:
        vector = source.get("vector")
        item = _item(source)
        return StoredDocument(
            item, source["content_hash"], None if vector is None else np.asarray(vector, dtype=np.float32)
        )

    def count(self, alias: str, *, version: int | None = None) -> int:
        index = self._name(alias, version)
        return int(self._call(lambda: self._client.count(index=index))["count"])

    def copy_version(
        self, alias: str, source: int, target: int, *, progress: Callable[[int, int], bool] | None = None
    ) -> int:
        """Server-side `_reindex`: vectors travel inside the cluster, nothing is re-embedded or sent to us."""
        src, dst = version_index_name(alias, source), version_index_name(alias, target)
        # A bulk load: no periodic refreshes (each makes a small segment whose HNSW graph is rebuilt on merge).
        self._call(lambda: self._client.indices.put_settings(index=dst, body={"index": {"refresh_interval": "-1"}}))
        try:
            return self._run_reindex(src, dst, progress)
        finally:
            self._call(lambda: self._client.indices.put_settings(index=dst, body={"index": {"refresh_interval": None}}))
            self._call(lambda: self._client.indices.refresh(index=dst))

    def _run_reindex(self, src: str, dst: str, progress: Callable[[int, int], bool] | None) -> int:
        body = {"source": {"index": src, "size": 2000}, "dest": {"index": dst}, "conflicts": "proceed"}
        slices = self._settings.reindex_slices or self._processors()
        task = self._call(lambda: self._client.reindex(body=body, wait_for_completion=False, slices=slices))["task"]
        while True:
            status = self._call(lambda: self._client.tasks.get(task_id=task))
            st = status["task"]["status"]
            done = int(st.get("created", 0)) + int(st.get("updated", 0))
            if status.get("completed"):
                failures = status.get("response", {}).get("failures") or []
                if failures or status.get("error"):
                    raise EngineError(f"_reindex {src} -> {dst} failed: {(failures or [status.get('error')])[0]}")
                if progress is not None:
                    progress(done, int(st.get("total", done)))
                return done
            if progress is not None and progress(done, int(st.get("total", 0))) is False:
                self._call(lambda: self._client.tasks.cancel(task_id=task))
                return done
            time.sleep(0.5)

    def _processors(self) -> int:
        """The data nodes' processors: each slice is one bulk stream, i.e. one thread building HNSW graphs."""
        nodes = self._call(lambda: self._client.nodes.info(metric="os", filter_path="nodes.*.os,nodes.*.roles"))
        found = [
            int(n["os"].get("allocated_processors", 1))
            for n in nodes.get("nodes", {}).values()
            if "data" in n.get("roles", ["data"])
        ]
        return max(1, sum(found))

    def refresh(self, alias: str, *, version: int | None = None) -> None:
        index = self._name(alias, version)
        self._call(lambda: self._client.indices.refresh(index=index))

    def state_token(self, alias: str, *, version: int | None = None) -> Hashable | None:
        """None: a write shows at the index's next refresh, which no call here announces."""
        return None

    def scan(
        self, alias: str, *, version: int | None = None, batch_size: int = 500, with_vectors: bool = True
    ) -> Iterator[list[StoredDocument]]:
        query: dict[str, Any] = {"query": {"match_all": {}}, "sort": ["_doc"]}
        query["_source"] = {"excludes": ["vector_bytes"] if with_vectors else _VECTOR_FIELDS}
        batch: list[StoredDocument] = []
        for hit in helpers.scan(
            self._client,
            index=self._name(alias, version),
            query=query,
            size=batch_size,
            scroll="5m",
            preserve_order=True,
        ):
            batch.append(self._stored(hit["_source"]))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # ---- queries -------------------------------------------------------------------------------------

    def _search(self, index: str, body: dict[str, Any], *, with_vectors: bool = False) -> list[dict[str, Any]]:
        body["_source"] = {"excludes": _VECTOR_FIELDS}
        if with_vectors:
            # The stored bytes come from the same stored-fields read as the source, during the fetch the
            # search does anyway: a scorer that needs the candidates' vectors then makes no second request
            # (at 100k items here, the bytes of 200 hits added 5-15 ms; an mget of 100 vectors, 25-30 ms).
            body["stored_fields"] = ["vector_bytes"]
        response = self._call(lambda: self._client.search(index=index, body=body))
        shards = response.get("_shards", {})
        if shards.get("failed"):
            # A partial answer would silently drop results; let the caller retry or degrade knowingly.
            raise EngineError(f"search answered by {shards.get('successful')} of {shards.get('total')} shards")
        hits: list[dict[str, Any]] = response["hits"]["hits"]
        return hits

    def _hits(self, raw: list[dict[str, Any]], score: Any = float) -> list[Hit]:
        # Validated when read, vectors unpacked when read: most hits of a retrieval leg never are (see Hit).
        hits = []
        for h in raw:
            packed = h.get("fields", {}).get("vector_bytes")
            unpack = partial(_unpack, packed[0]) if packed else None
            hits.append(Hit(h["_id"], score(h["_score"]), load=partial(_item, h["_source"]), unpack=unpack))
        return hits

    def keyword_search(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        boosts: Mapping[str, float] | None = None,
        filter: Filter | None = None,
        version: int | None = None,
        terms: Mapping[str, float] | None = None,
    ) -> list[Hit]:
        check_k(k)
        fields = [f"{TEXT_FIELD_NAMES[f]}^{w}" for f, w in resolve_boosts(boosts).items()]
        words = query_words(text, self._max_terms)
        added = weighted_words(terms, self._max_terms)
        if not words and not added:
            return []

        def match(query: str, boost: float = 1.0) -> dict[str, Any]:
            inner: dict[str, Any] = {"query": query, "fields": fields, "type": "best_fields", "tie_breaker": 0.3}
            return {"multi_match": inner if boost == 1.0 else {**inner, "boost": boost}}

        if not added:
            query: dict[str, Any] = {"bool": {"must": [match(" ".join(words))], "filter": filter_clause(filter)}}
        else:  # query expansion: the text and each added word, scores summed, any one of them enough
            should = ([match(" ".join(words))] if words else []) + [match(w, wt) for w, wt in added]
            query = {"bool": {"should": should, "minimum_should_match": 1, "filter": filter_clause(filter)}}
        return self._hits(self._search(self._name(alias, version), {"size": k, "query": query}, with_vectors=True))

    def vector_search(
        self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        check_k(k)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(query)) or not query.any():
            raise ValidationError("vector", "must be finite numbers, not all zero")
        knn: dict[str, Any] = {
            "vector": normalise(query).tolist(),
            "k": k,
            "method_parameters": {"ef_search": max(self._settings.hnsw_ef_search, k)},
        }
        if filter is not None:
            knn["filter"] = filter_clause(filter)[0]  # efficient filtering: applied inside the HNSW search
        body = {"size": k, "query": {"knn": {"vector": knn}}}
        # The cosinesimil space scores (1 + cos) / 2; both engines report the cosine itself.
        hits = self._search(self._name(alias, version), body, with_vectors=True)
        return self._hits(hits, score=lambda s: 2.0 * float(s) - 1.0)

    def prefix_suggest(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        filter: Filter | None = None,
        version: int | None = None,
        popularity_weight: float = SUGGEST_POPULARITY_WEIGHT,
    ) -> list[Hit]:
        check_k(k)
        completed, prefix = suggest_parts(text, self._max_terms)
        if not completed and not prefix:
            return []
        words = " ".join([*completed, *([prefix] if prefix else [])])
        index = self._name(alias, version)
        script = {"source": _PRIOR_SCRIPT, "params": {"w": popularity_weight}}

        def query(fields: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
            # Every word in one field: the title, or the brand at a share of the score (SUGGEST_BRAND_WEIGHT).
            either = [self._suggest_clause(f, words, prefix is not None, b) for f, b in fields]
            matched = {"bool": {"should": either, "minimum_should_match": 1, "filter": filter_clause(filter)}}
            prior = {"function_score": {"query": matched, "script_score": {"script": script}, "boost_mode": "replace"}}
            return self._search(index, {"size": k, "query": prior if popularity_weight > 0 else matched})

        found = query(_SUGGEST_FIELDS[:1])
        if len(found) < k:
            # Brands only where titles leave the answer short, as the embedded engine does (where titles fill
            # it, a brand match at SUGGEST_BRAND_WEIGHT seldom gets in): asked on every keystroke, the brand
            # clause cost the 100k-item benchmark's prefix query about 40% at the median. Titles and brands
            # then in one query, scored together. A version made before `brand.sayt` has no such
            # field, and its clause matches nothing: its suggestions come from titles alone.
            found = query(_SUGGEST_FIELDS)
        return self._hits(found)

    @staticmethod
    def _suggest_clause(field: str, words: str, last_is_prefix: bool, boost: float) -> dict[str, Any]:
        """Every typed word in `field` (a search_as_you_type field); exact words rank above corrected ones."""
        if last_is_prefix:
            # bool_prefix: the completed words are fuzzy terms, the last one a prefix.
            match: dict[str, Any] = {
                "multi_match": {
                    "query": words,
                    "type": "bool_prefix",
                    "operator": "and",
                    "fuzziness": "AUTO",
                    "fields": [field, f"{field}._2gram", f"{field}._3gram"],
                }
            }
        else:
            match = {"match": {field: {"query": words, "operator": "and", "fuzziness": "AUTO"}}}
        exact = {"match": {field: {"query": words, "operator": "or"}}}
        return {"bool": {"must": [match], "should": [exact], "boost": boost}}

    def top_by_field(
        self, alias: str, field: str, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        check_k(k)
        kind = check_sort_field(self._schema.filter_fields(), field)
        body = {
            "size": k,
            "query": {"bool": {"filter": filter_clause(filter)}},
            "sort": [{field: {"order": "desc", "missing": "_last"}}, {"id": "asc"}],
            "track_total_hits": False,
        }
        scale = 1000.0 if kind is FieldKind.DATE else 1.0  # a date sorts by epoch milliseconds
        hits = []
        for h in self._search(self._name(alias, version), body):
            # A missing value sorts as the type's lowest (a long's minimum for dates): read presence from the source.
            value = h["sort"][0] if _has_value(h["_source"], field) else None
            score = float(value) / scale if isinstance(value, int | float) else 0.0
            hits.append(Hit(h["_id"], score, load=partial(_item, h["_source"])))
        return hits

    def close(self) -> None:
        self._client.close()
