"""Faiss HNSW over the rows of one index version, with filtering inside the graph walk.

HNSW cannot remove ids, so an update adds the new revision under a new row and the old row is excluded by
the selector built from the live mask; a rebuild drops the dead rows once they pile up.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np
import numpy.typing as npt

from services.core.engines.base import Vector
from services.core.engines.embedded.columns import Mask
from services.core.settings import EmbeddedSettings


class VectorIndex:
    def __init__(self, dimension: int, settings: EmbeddedSettings) -> None:
        self.dimension = dimension
        self._settings = settings
        self._lock = threading.Lock()  # Faiss does not allow a search during an add
        self._index = self._empty()

    def _empty(self) -> faiss.IndexIDMap2:
        hnsw = faiss.IndexHNSWFlat(self.dimension, self._settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self._settings.hnsw_ef_construction
        return faiss.IndexIDMap2(hnsw)

    @property
    def total(self) -> int:
        return int(self._index.ntotal)

    def add(self, rows: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        if len(rows):
            with self._lock:
                self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows.astype(np.int64))

    def search(self, query: Vector, k: int, allowed: Mask) -> list[tuple[int, float]]:
        """(row, cosine) of the k nearest allowed rows."""
        rows = np.flatnonzero(allowed)
        if len(rows) == 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        with self._lock:
            if len(rows) <= self._settings.exact_search_below:
                # Few candidates: an exact scan is cheaper than a filtered graph walk and never misses.
                vecs = self._index.reconstruct_batch(rows.astype(np.int64))
                scores = vecs @ q[0]
                top = np.argsort(-scores)[:k]
                return [(int(rows[i]), float(scores[i])) for i in top]
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                sel=selector, efSearch=max(self._settings.hnsw_ef_search, k)
            )
            scores, ids = self._index.search(q, k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
