"""One embedded index version: the SQLite store plus the text and vector indexes derived from it."""

from __future__ import annotations

import atexit
import fcntl
import functools
import gc
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from services.core.domain import FieldKind, Item, ItemLabel
from services.core.engines.base import UNKNOWN, Unknown, Vector
from services.core.engines.embedded.columns import FilterColumns, Mask
from services.core.engines.embedded.items import ParsedItems
from services.core.engines.embedded.store import DocStore, Revision
from services.core.engines.embedded.text import TextIndex
from services.core.engines.embedded.vectors import VectorIndex
from services.core.filters import Filter
from services.core.settings import EmbeddedSettings

# Filter masks kept per index state (cleared by every write): a request asks for a handful.
_MASKS_KEPT = 16


@functools.cache
def _unfreeze_at_exit() -> None:
    # Native extensions (torch's triton bindings) check at exit that their objects were freed; frozen ones
    # would be reported as leaks. Handing them back to the collector before shutdown keeps exit quiet.
    atexit.register(gc.unfreeze)


class VersionIndex:
    def __init__(self, folder: Path, fields: dict[str, FieldKind], settings: EmbeddedSettings) -> None:
        self.folder = folder
        manifest = json.loads((folder / "manifest.json").read_text())
        self.dimension = int(manifest["dimension"])
        self._fields = fields
        self._settings = settings
        self._lock = threading.RLock()
        self.store = DocStore(folder / "store.sqlite")
        self.text = TextIndex(folder / "text")
        self.items = ParsedItems(settings.parsed_items)
        self._load()

    def _load(self) -> None:
        """Build the in-memory state (columns, vectors, id maps) from the store in one pass.

        Streamed: each batch of rows goes into the columns and the vector graph and is dropped, so opening
        100k items never holds every source and vector at once, nor copies of them. The new state replaces
        the old one only when whole."""
        columns = FilterColumns(self._fields)
        labels: dict[int, ItemLabel] = {}
        row_of: dict[str, int] = {}
        vectors = VectorIndex(self.dimension, self._settings)
        with self.store.snapshot() as (seq, batches):
            for rows in batches:
                ids: list[int] = []
                vecs: list[Vector] = []
                for r in rows:
                    item = Item.model_validate_json(r.source)
                    columns.add(r.row, item)
                    labels[r.row] = ItemLabel.of(item)
                    row_of[r.id] = r.row
                    if r.vector is not None:
                        ids.append(r.row)
                        vecs.append(r.vector)
                if ids:
                    vectors.add(np.array(ids, dtype=np.int64), np.stack(vecs))
        self.columns, self.labels, self.row_of, self.vectors = columns, labels, row_of, vectors
        self.applied_seq = seq
        self._mask_cache: dict[Filter | None, tuple[Mask, bool]] = {}
        # This state lives as long as the version. Left to the cyclic GC, every full collection walks its
        # hundreds of thousands of containers: 150–260 ms pauses at 100k items, i.e. the API's p99. Frozen
        # objects are never scanned (nor freed by the cycle collector; plain reference counting still frees them).
        gc.collect()
        gc.freeze()
        _unfreeze_at_exit()

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialises writers across threads and processes (the API and a worker may share a data dir)."""
        with self._lock, open(self.folder / "write.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sync(self) -> None:
        """Catch up with writes made since the last sync, by this process or another one."""
        if self.store.last_seq() == self.applied_seq:
            return
        with self._lock:
            changes = self.store.changes_since(self.applied_seq)
            while changes:
                self._apply(changes)
                changes = self.store.changes_since(self.applied_seq)
            dead = self.vectors.total - len(self.row_of)
            if self.vectors.total > 1000 and dead > self._settings.compact_dead_ratio * self.vectors.total:
                self._load()

    def _apply(self, changes: list[Revision]) -> None:
        new_rows: list[int] = []
        new_vecs: list[Vector] = []
        for rev in changes:
            old = self.row_of.pop(rev.id, None)
            if old is not None:
                self.columns.remove(old)
                self.labels.pop(old, None)
            if rev.source is not None and rev.vector is not None:
                item = Item.model_validate_json(rev.source)
                self.columns.add(rev.seq, item)
                self.labels[rev.seq] = ItemLabel.of(item)
                self.row_of[rev.id] = rev.seq
                new_rows.append(rev.seq)
                new_vecs.append(rev.vector)
        if new_rows:
            self.vectors.add(np.array(new_rows, dtype=np.int64), np.stack(new_vecs))
        self.applied_seq = changes[-1].seq
        self._mask_cache = {}

    def vectors_of(self, ids: Sequence[str]) -> dict[str, Vector]:
        """The live vectors of these ids, from memory (the graph holds them): no store read, no parse. Under
        the lock, so that a sync in another thread never pairs this id map with another graph."""
        with self._lock:
            found = [(i, row) for i in ids if (row := self.row_of.get(i)) is not None]
            vecs = self.vectors.reconstruct(np.fromiter((r for _, r in found), dtype=np.int64, count=len(found)))
        return {i: vecs[n] for n, (i, _) in enumerate(found)}

    def mask(self, flt: Filter | None) -> Mask:
        """The live rows the filter allows (read-only). The last few masks are kept until the next write:
        a keystroke's legs and a search's legs ask for the same one, and each costs a pass over every row."""
        return self._masks(flt)[0]

    def text_mask(self, flt: Filter | None) -> Mask | None:
        """The rows a text query may return, or None for every live row. A filter that passes every live row
        (suggest's `available = true` on a catalog with nothing unavailable) is dropped: the text index would
        otherwise carry it as a clause listing each row."""
        if flt is None:
            return None
        allowed, every = self._masks(flt)
        return None if every else allowed

    def _masks(self, flt: Filter | None) -> tuple[Mask, bool]:
        with self._lock:  # the mask and the live count from the same state, not from either side of a sync
            try:
                held = self._mask_cache.get(flt)
                cacheable = True
            except TypeError:  # a filter value that cannot be hashed: computed every time
                held, cacheable = None, False
            if held is not None:
                return held
            allowed = self.columns.mask(flt)
            allowed.flags.writeable = False  # shared by every caller until the next write
            every = int(np.count_nonzero(allowed)) == len(self.row_of)
            if cacheable:
                if len(self._mask_cache) >= _MASKS_KEPT:
                    self._mask_cache.clear()
                self._mask_cache[flt] = (allowed, every)
            return allowed, every

    def with_popularity_prior(self, found: list[tuple[int, float]], k: int, weight: float) -> list[tuple[int, float]]:
        """The best k of (row, text score) by text score x `popularity_prior` (base.py), read from the
        popularity column: no document is read for the rows that do not make it."""
        if not found or weight <= 0:
            return found[:k]
        rows = np.fromiter((row for row, _ in found), dtype=np.int64, count=len(found))
        with self._lock:
            column = self.columns.numbers("popularity")
            if rows.max() >= column.shape[0]:  # a row written since the search, past the columns: no prior now
                return found[:k]
            popularity = column[rows]
        scores = np.fromiter((score for _, score in found), dtype=np.float64, count=len(found))
        prior = 1.0 + weight * np.log1p(np.maximum(np.nan_to_num(popularity), 0.0))
        final = scores * prior
        order = np.lexsort((np.arange(len(found)), -final))[:k]  # ties keep the text order
        return [(int(rows[i]), float(final[i])) for i in order]

    def popularity_of(self, rows: Sequence[int]) -> list[float | Unknown | None]:
        """Each row's popularity from its column (None: the item has none); UNKNOWN for a row the columns do
        not hold as live (superseded, or written since), whose item then says."""
        at = np.fromiter(rows, dtype=np.int64, count=len(rows))
        with self._lock:
            live, column = self.columns.live, self.columns.numbers("popularity")
            held = at < min(len(live), column.shape[0])
            safe = np.where(held, at, 0)
            held &= live[safe]
            values = column[safe]
        return [
            (None if math.isnan(v) else v) if h else UNKNOWN
            for h, v in zip(held.tolist(), values.tolist(), strict=True)
        ]

    def top_by(self, field: str, k: int, flt: Filter | None) -> list[tuple[int, float]]:
        """The k allowed rows with the highest values of a number or date column, then rows without a value;
        ties in row order (write order). The score is the value, 0.0 for a row without one."""
        with self._lock:  # the mask and the column from the same state
            rows = np.flatnonzero(self.mask(flt))
            values = self.columns.numbers(field)[rows]
        key = np.where(np.isnan(values), -np.inf, values)
        if k < rows.size:
            # Only the rows at or above the k-th value are sorted: the rest of a 100k catalog never is.
            threshold = -np.partition(-key, k - 1)[k - 1]
            keep = np.flatnonzero(key >= threshold)
            rows, values, key = rows[keep], values[keep], key[keep]
        order = np.lexsort((rows, -key))[:k]  # by value, highest first; ties by row
        return [(int(rows[i]), 0.0 if np.isnan(values[i]) else float(values[i])) for i in order]

    def is_live(self, row: int) -> bool:
        return row < self.columns.size and bool(self.columns.live[row])

    def close(self) -> None:
        self.store.close()
