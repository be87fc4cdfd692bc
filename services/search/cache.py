"""An Embedder that remembers the vectors of recent texts: typing "inter", "inters", "interst" and coming
back to a query costs one embedding each, not one per request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.core.embedding import Embedder, Vectors


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    maxsize: int


class CachingEmbedder:
    """Least-recently-used cache of query vectors in front of another Embedder; thread-safe.

    Keys are the exact texts: callers normalise queries first (see `types.normalise_text`). Cached vectors
    are read-only, so a caller cannot change what the next one gets.
    """

    def __init__(self, inner: Embedder, maxsize: int = 4096) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self._inner = inner
        self._maxsize = maxsize
        self._entries: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self._maxsize)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return self._inner.embed([])
        found: dict[str, Vectors] = {}
        with self._lock:
            for t in texts:
                vec = self._entries.get(t)
                if vec is not None:
                    self._entries.move_to_end(t)
                    found[t] = vec
            self._hits += sum(1 for t in texts if t in found)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            fresh = self._inner.embed(missing)
            with self._lock:
                self._misses += len(missing)
                for t, vec in zip(missing, fresh, strict=True):
                    vec = vec.copy()
                    vec.flags.writeable = False
                    found[t] = vec
                    if self._maxsize:
                        self._entries[t] = vec
                        self._entries.move_to_end(t)
                while len(self._entries) > self._maxsize:
                    self._entries.popitem(last=False)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)
