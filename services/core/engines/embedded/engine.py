"""The embedded engine: Faiss + Tantivy + SQLite under a data directory, no server needed.

Layout: <data_dir>/embedded/<alias>/alias.json points at the live version; each version lives in
<alias>/v0001/ with its manifest, SQLite store, Tantivy folder and write lock. The alias file is replaced
atomically (write, fsync, rename), so a reader sees the old or the new version, never a torn state.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from services.core.domain import Item
from services.core.engines.base import (
    PRIOR_WINDOW,
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
from services.core.engines.embedded.text import with_brand_matches
from services.core.engines.embedded.version import VersionIndex
from services.core.errors import EngineError, IndexNotFoundError, ValidationError
from services.core.filters import Filter
from services.core.settings import CoreSettings


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EmbeddedEngine:
    def __init__(self, settings: CoreSettings) -> None:
        self._root = settings.data_dir / "embedded"
        self._root.mkdir(parents=True, exist_ok=True)
        self._settings = settings.embedded
        self._fields = settings.catalog.filter_fields()
        self._max_terms = settings.max_query_terms
        # Keyed by (alias, number), not by folder: every query looks its version up, and building and hashing
        # the folder's Path cost 20 of the 39 µs of that lookup (two per keystroke: the state token, the query).
        self._open: dict[tuple[str, int], VersionIndex] = {}
        self._lock = threading.Lock()

    # ---- versions and alias ----------------------------------------------------------------------

    def _alias_dir(self, alias: str) -> Path:
        return self._root / check_alias(alias)

    def _version_dir(self, alias: str, version: int) -> Path:
        return self._alias_dir(alias) / f"v{version:04d}"

    def _live_number(self, alias: str) -> int | None:
        try:
            return int(json.loads((self._alias_dir(alias) / "alias.json").read_text())["version"])
        except FileNotFoundError:
            return None

    def create_version(self, alias: str, *, dimension: int, model_id: str) -> IndexVersion:
        if dimension < 1:
            raise ValidationError("dimension", "must be >= 1")
        folder = self._alias_dir(alias)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            numbers = [int(p.name[1:]) for p in folder.glob("v[0-9]*") if p.is_dir()]
            number = max(numbers, default=0) + 1
            vdir = self._version_dir(alias, number)
            staging = folder / f".staging-{number}-{os.getpid()}"
            staging.mkdir()
            manifest = {
                "dimension": dimension,
                "model_id": model_id,
                "created_at": datetime.now(UTC).isoformat(),
            }
            _atomic_json(staging / "manifest.json", manifest)
            os.rename(staging, vdir)  # a version folder appears whole or not at all
        return self._describe(alias, number)

    def clone_version(self, alias: str, source: int) -> IndexVersion | None:
        # Every version here rebuilds its Faiss graph and Tantivy index from SQLite rows anyway, so a clone
        # would save nothing over `copy_version`, which already moves stored vectors without embedding.
        return None

    def point_alias(self, alias: str, version: int) -> None:
        if not (self._version_dir(alias, version) / "manifest.json").exists():
            raise IndexNotFoundError(f"{alias} has no version {version}")
        _atomic_json(self._alias_dir(alias) / "alias.json", {"version": version})

    def list_versions(self, alias: str) -> list[IndexVersion]:
        folder = self._alias_dir(alias)
        numbers = sorted(int(p.name[1:]) for p in folder.glob("v[0-9]*") if (p / "manifest.json").exists())
        return [self._describe(alias, n) for n in numbers]

    def live_version(self, alias: str) -> IndexVersion | None:
        number = self._live_number(alias)
        return None if number is None else self._describe(alias, number)

    def _describe(self, alias: str, number: int) -> IndexVersion:
        manifest = json.loads((self._version_dir(alias, number) / "manifest.json").read_text())
        return IndexVersion(
            alias=alias,
            version=number,
            name=version_index_name(alias, number),
            dimension=manifest["dimension"],
            model_id=manifest["model_id"],
            created_at=datetime.fromisoformat(manifest["created_at"]),
            live=self._live_number(alias) == number,
            count=self._version(alias, number).store.count(),
        )

    def drop_version(self, alias: str, version: int) -> None:
        if self._live_number(alias) == version:
            raise ValidationError(
                "version", f"version {version} is live behind {alias!r}; point the alias elsewhere first"
            )
        vdir = self._version_dir(alias, version)
        with self._lock:
            opened = self._open.pop((alias, version), None)
        if opened is not None:
            opened.close()
        if not vdir.exists():
            raise IndexNotFoundError(f"{alias} has no version {version}")
        trash = vdir.with_name(f".drop-{vdir.name}-{os.getpid()}")
        os.rename(vdir, trash)  # gone from listings at once; the files follow
        shutil.rmtree(trash, ignore_errors=True)

    def drop_alias(self, alias: str) -> None:
        """Remove the alias and every version behind it (a catalog taken down)."""
        folder = self._alias_dir(alias)
        with self._lock:
            for key in [key for key in self._open if key[0] == alias]:
                self._open.pop(key).close()
        if folder.exists():
            trash = folder.with_name(f".drop-{folder.name}-{os.getpid()}")
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _version(self, alias: str, version: int | None) -> VersionIndex:
        number = self._live_number(alias) if version is None else version
        if number is None:
            raise IndexNotFoundError(f"alias {alias!r} does not point at any version")
        with self._lock:
            opened = self._open.get((alias, number))
            if opened is None:
                vdir = self._version_dir(alias, number)
                if not (vdir / "manifest.json").exists():
                    raise IndexNotFoundError(f"{alias} has no version {number}")
                opened = self._open[(alias, number)] = VersionIndex(vdir, self._fields, self._settings)
        opened.sync()
        return opened

    # ---- writes and reads by id --------------------------------------------------------------------

    def upsert(self, alias: str, docs: Sequence[Document], *, version: int | None = None) -> BulkResult:
        index = self._version(alias, version)
        result = BulkResult()
        rows: list[tuple[str, str, str, Vector]] = []
        for doc in docs:
            problem = check_document(doc, index.dimension)
            if problem:
                result.failed.append(ItemFailure(doc.item.id, problem))
                continue
            rows.append((doc.item.id, doc.item.model_dump_json(), doc.item.content_hash, normalise(doc.vector)))
        if rows:
            with index.write_lock():
                index.store.write(rows, [])
                index.text.catch_up(index.store)
            index.sync()
        result.succeeded.extend(r[0] for r in rows)
        return result

    def delete(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> BulkResult:
        index = self._version(alias, version)
        present = set(index.store.get(ids, with_vectors=False))
        gone = [i for i in dict.fromkeys(ids) if i in present]
        if gone:
            with index.write_lock():
                index.store.write([], gone)
                index.text.catch_up(index.store)
            index.sync()
        missing = [ItemFailure(i, "not found") for i in dict.fromkeys(ids) if i not in present]
        return BulkResult(succeeded=gone, failed=missing)

    def get(
        self, alias: str, ids: Sequence[str], *, with_vectors: bool = False, version: int | None = None
    ) -> list[StoredDocument]:
        rows = self._version(alias, version).store.get(ids, with_vectors)
        return [
            StoredDocument(Item.model_validate_json(r.source), r.hash, r.vector)
            for i in dict.fromkeys(ids)
            if (r := rows.get(i)) is not None
        ]

    def get_vectors(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> dict[str, Vector]:
        return self._version(alias, version).vectors_of(list(dict.fromkeys(ids)))

    def count(self, alias: str, *, version: int | None = None) -> int:
        return self._version(alias, version).store.count()

    def copy_version(
        self, alias: str, source: int, target: int, *, progress: Callable[[int, int], bool] | None = None
    ) -> int:
        total = self.count(alias, version=source)
        done = 0
        for batch in self.scan(alias, version=source, batch_size=2000, with_vectors=True):
            docs = [Document(d.item, d.vector) for d in batch if d.vector is not None]
            result = self.upsert(alias, docs, version=target)
            if result.failed:
                raise EngineError(
                    f"copy into version {target} failed for {len(result.failed)} items: {result.failed[0]}"
                )
            done += len(docs)
            if progress is not None and progress(done, total) is False:
                break
        return done

    def refresh(self, alias: str, *, version: int | None = None) -> None:
        # Writes are visible when they return; syncing here catches up with other processes' writes.
        self._version(alias, version).sync()

    def scan(
        self, alias: str, *, version: int | None = None, batch_size: int = 500, with_vectors: bool = True
    ) -> Iterator[list[StoredDocument]]:
        for rows in self._version(alias, version).store.scan(batch_size, with_vectors):
            yield [StoredDocument(Item.model_validate_json(r.source), r.hash, r.vector) for r in rows]

    # ---- queries -------------------------------------------------------------------------------------

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
        chosen = resolve_boosts(boosts)
        words = query_words(text, self._max_terms)
        added = weighted_words(terms, self._max_terms)
        if not words and not added:
            return []
        index = self._version(alias, version)
        query = index.text.expanded_query(words, added, chosen)
        found = index.text.search(query, k, index.text_mask(filter), index.is_live, index.applied_seq)
        return self._hits(index, found)

    def vector_search(
        self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        check_k(k)
        index = self._version(alias, version)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != index.dimension or not np.all(np.isfinite(query)):
            raise ValidationError("vector", f"must be {index.dimension} finite numbers")
        return self._hits(index, index.vectors.search(normalise(query), k, index.mask(filter)))

    def state_token(self, alias: str, *, version: int | None = None) -> Hashable | None:
        """(version, last change applied), after catching up with other processes' writes, as a query does."""
        number = self._live_number(alias) if version is None else version
        if number is None:
            raise IndexNotFoundError(f"alias {alias!r} does not point at any version")
        return number, self._version(alias, number).applied_seq

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
        index = self._version(alias, version)
        window = max(k, PRIOR_WINDOW) if popularity_weight > 0 else k
        mask = index.text_mask(filter)
        query = index.text.suggest_query(completed, prefix)
        found = index.text.search(query, window, mask, index.is_live, index.applied_seq)
        if len(found) < k and index.text.brand_prefix:
            # Brands only where titles leave the answer short. A brand match scores SUGGEST_BRAND_WEIGHT of a
            # title match, so where titles fill it one seldom gets in, and asking the brands on every keystroke
            # cost the 100k-item benchmark's prefix query 50% (a one-letter prefix, 1.9 -> 3.8 ms on average).
            query = index.text.suggest_query(completed, prefix, brand=True)
            brands = index.text.search(query, window, mask, index.is_live, index.applied_seq)
            found = with_brand_matches(found, brands)
        # a keystroke's items are kept on their first read: the word's next keystrokes read them again
        return self._hits(index, index.with_popularity_prior(found, k, popularity_weight), keep_at_once=True)

    def top_by_field(
        self, alias: str, field: str, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        check_k(k)
        check_sort_field(self._fields, field)
        index = self._version(alias, version)
        return self._hits(index, index.top_by(field, k, filter))

    def _hits(self, index: VersionIndex, found: list[tuple[int, float]], *, keep_at_once: bool = False) -> list[Hit]:
        # The sources are read now (one query, and the revision the search saw), but each is parsed and
        # validated only when someone reads that hit's item: most of a 200-hit leg never is. An item parsed
        # for an earlier query is handed over as it is (a row's source never changes); a parsed item is kept
        # at once or on its second read (`ParsedItems`, items.py).
        rows = [row for row, _ in found]
        sources = index.store.sources_by_rows(rows)
        popularity = index.popularity_of(rows)
        hits = []
        for (row, score), pop in zip(found, popularity, strict=True):
            entry = sources.get(row)
            if entry is None:  # a row superseded since the search started is skipped, never resurfaced
                continue
            item = index.items.get(row)
            label = index.labels.get(row)  # held beside the columns: a suggestion list builds only what it shows
            if item is not None:
                hits.append(Hit(entry[0], score, item, popularity=pop, label=label))
            else:
                load = partial(index.items.parse, row, entry[1], at_once=keep_at_once)
                hits.append(Hit(entry[0], score, load=load, popularity=pop, label=label))
        return hits

    def close(self) -> None:
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()
