"""An Embedder that remembers the vectors of recent texts: typing "inter", "inters", "interst" and coming
back to a query costs one embedding each, not one per request. Suggest reads it without computing
(`cached`) and asks for a vector to be ready later (`embed_later`), so no keystroke waits for the model."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.core.embedding import Embedder, Vectors

log = logging.getLogger(__name__)
Vector = npt.NDArray[np.float32]


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
        # Background embedding: one text in flight and one waiting; a newer request replaces the waiting one,
        # so fast typing never queues up embeddings of prefixes nobody will ask for again.
        self._wanted: str | None = None
        self._then: Callable[[Vector], None] | None = None  # what to do with the waiting text's vector
        self._start_at = 0.0  # monotonic time the waiting text may start
        self._wake = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._closed = False

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self._maxsize)

    def cached(self, text: str) -> Vector | None:
        """The vector of `text` if it is held, without computing anything (and without counting a miss)."""
        with self._lock:
            vec = self._entries.get(text)
            if vec is not None:
                self._entries.move_to_end(text)
                self._hits += 1
            return vec

    def embed_later(self, text: str, *, idle_s: float = 0.0, then: Callable[[Vector], None] | None = None) -> None:
        """Have `text`'s vector cached soon, off the caller's thread. Latest wins: at most one embedding runs
        and one waits; a request made while another waits replaces it. With `idle_s`, the waiting text starts
        only once no newer request came for that long: a burst of keystrokes costs one embedding, at its end,
        instead of a model kept busy beside the requests. `then` is called with the vector on the same thread
        once it is held (suggest searches it there, so the next keystroke finds its hits ready); a failure in
        it is logged, as one of the embedding is."""
        with self._lock:
            if self._closed or not self._maxsize or text in self._entries:
                return
            waiting, self._wanted, self._then = self._wanted, text, then
            start_at, self._start_at = self._start_at, time.monotonic() + idle_s
            if self._worker is None:
                self._worker = threading.Thread(target=self._warm, name="query-vector-warmer", daemon=True)
                self._worker.start()
            # A worker already waiting for a text sleeps until its start time. When that time only moves later
            # (the next keystroke of a burst), waking it would cost a thread switch on the request's core and
            # nothing else: it wakes at the old time, sees the new one and sleeps again.
            if waiting is None or self._start_at < start_at:
                self._wake.notify()

    def _warm(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (self._wanted is None or time.monotonic() < self._start_at):
                    # a newer request moves _start_at on; waking early only means waiting again
                    self._wake.wait(None if self._wanted is None else max(self._start_at - time.monotonic(), 0))
                if self._closed:
                    return
                text, self._wanted, then, self._then = self._wanted, None, self._then, None
            if text is None:
                continue
            try:
                (vec,) = self.embed([text])
                with self._lock:
                    closed = self._closed  # closed meanwhile: what `then` would use may be closed too
                if then is not None and not closed:
                    then(vec)
            except Exception:  # a failed warm-up only costs the vector leg of the next keystroke
                log.exception("background work on a query vector failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wanted, self._then = None, None
            self._wake.notify_all()

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
