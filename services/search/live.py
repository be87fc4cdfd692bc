"""The search services for the version the alias points at, with the model that version was embedded with.

Each request takes the current services; when the alias moves (a reindex swap, a rollback), the next
request gets services pinned to the new version and its model. A query is never embedded with one model and
searched against vectors of another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from services.core.embedding import Embedder, EmbedderPool
from services.core.engines.base import SearchEngine
from services.core.engines.pinned import PinnedEngine
from services.core.errors import IndexNotFoundError
from services.search.service import SearchServices


class LiveSearch:
    def __init__(
        self,
        engine: SearchEngine,
        alias: str,
        embedders: EmbedderPool | None,
        build: Callable[[SearchEngine, Embedder | None], SearchServices],
        refresh_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._alias = alias
        self._embedders = embedders
        self._build = build
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._current: tuple[int, SearchServices] | None = None
        self._checked = 0.0
        self._retired: list[SearchServices] = []

    def fresh(self) -> SearchServices | None:
        """The current services if the alias was checked within `refresh_s`, else None (call `current`, which
        may ask the engine). Never blocks: the API answers most requests from here without a thread hop."""
        held = self._current
        if held is not None and time.monotonic() - self._checked < self._refresh_s:
            return held[1]
        return None

    @property
    def version(self) -> int | None:
        """The version the current services are pinned to (None before the first request found one)."""
        held = self._current
        return held[0] if held is not None else None

    def current(self) -> SearchServices:
        now = time.monotonic()
        if self._current is not None and now - self._checked < self._refresh_s:
            return self._current[1]
        with self._lock:
            if self._current is not None and now - self._checked < self._refresh_s:
                return self._current[1]
            live = self._engine.live_version(self._alias)
            self._checked = time.monotonic()
            if live is None:
                if self._current is None:
                    raise IndexNotFoundError(f"alias {self._alias!r} does not point at any version yet")
                return self._current[1]
            if self._current is None or self._current[0] != live.version:
                embedder = self._embedders.get(live.model_id) if self._embedders else None
                services = self._build(PinnedEngine(self._engine, self._alias, live.version), embedder)
                if self._current is not None:
                    self._retired.append(self._current[1])  # requests in flight may still use it
                self._current = (live.version, services)
            return self._current[1]

    def close(self) -> None:
        for services in [*self._retired, *([self._current[1]] if self._current else [])]:
            services.close()
