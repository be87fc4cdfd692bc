"""The search services for the version the alias points at, with the model that version was embedded with.

Each request takes the current services; when the alias moves (a reindex swap, a rollback), the next
request gets services pinned to the new version and its model. A query is never embedded with one model and
searched against vectors of another. The old services are retired: they drop what they held for later requests
(answers, vector hits) and stop embedding in the background, and are closed a minute later (or at shutdown),
once no request in flight can still be using them.

Where the alias points is checked in the background (`follow`), once every `refresh_s`, so that no request
waits for the check. Before, the first request after each second did it itself: on the embedded engine, a
keystroke then read the alias and the version's manifest, counted the version's items, and went the slow way
through FastAPI (keystroke.py) instead of the keystroke path: 8-11 ms, against 3 ms for its neighbours, on
9 of 2,020 benchmark keystrokes, all among the slowest 1%. On OpenSearch the check is a call to the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from services.core.embedding import Embedder, EmbedderPool
from services.core.engines.base import SearchEngine
from services.core.engines.pinned import PinnedEngine
from services.core.errors import IndexNotFoundError
from services.search.service import SearchServices

log = logging.getLogger(__name__)


class LiveSearch:
    def __init__(
        self,
        engine: SearchEngine,
        alias: str,
        embedders: EmbedderPool | None,
        build: Callable[[SearchEngine, Embedder | None], SearchServices],
        refresh_s: float = 1.0,
        retired_grace_s: float = 60.0,
    ) -> None:
        self._engine = engine
        self._alias = alias
        self._embedders = embedders
        self._build = build
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._current: tuple[int, SearchServices] | None = None
        self._checked = 0.0
        self._failed: tuple[float, Exception] | None = None  # when the last check failed, and how
        # Services of versions the alias has left, with when they were retired: closed once no request can
        # still be using them (`retired_grace_s`; a request takes milliseconds), so that a process that sees
        # many reindexes does not keep every version's executor threads and caches.
        self._retired: list[tuple[float, SearchServices]] = []
        self._retired_grace_s = retired_grace_s
        # How old a check may be for a request to go without one: `refresh_s`, or twice that while a follower
        # checks every `refresh_s` (a check that takes a while does not send requests to check too).
        self._fresh_for = refresh_s
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    def follow(self) -> None:
        """Check the alias every `refresh_s` in a background thread from now on. If the checks fail (an engine
        that does not answer), requests check for themselves again, and fail as they did (a 503)."""
        if self._follower is not None or self._refresh_s <= 0:
            return
        self._fresh_for = 2 * self._refresh_s
        self._follower = threading.Thread(target=self._follow, name="alias-follower", daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        failing: str | None = None
        while True:
            try:
                self._check()
                failing = None
            except IndexNotFoundError:  # nothing ingested yet: requests say so themselves
                pass
            except Exception as exc:  # the thread outlives an engine that is briefly away; said once per error
                if str(exc) != failing:
                    log.warning("could not check where the alias %r points: %s", self._alias, exc)
                failing = str(exc)
            if self._stop.wait(self._refresh_s):
                return

    def fresh(self) -> SearchServices | None:
        """The current services if the alias was checked recently, else None (call `current`, which asks the
        engine). Never blocks: the API answers most requests from here without a thread hop."""
        held = self._current
        if held is not None and time.monotonic() - self._checked < self._fresh_for:
            return held[1]
        return None

    @property
    def version(self) -> int | None:
        """The version the current services are pinned to (None before the first request found one)."""
        held = self._current
        return held[0] if held is not None else None

    def current(self) -> SearchServices:
        held = self.fresh()
        return held if held is not None else self._check()

    def _check(self) -> SearchServices:
        """Ask the engine where the alias points; build the services of a version not seen before."""
        asked = time.monotonic()
        with self._lock:
            if self._current is not None and self._checked > asked:  # checked by another thread meanwhile
                return self._current[1]
            failed = self._failed
            if failed is not None and failed[0] > asked:  # ... and failed: not asked again (an engine that is
                raise failed[1]  # away answers after its client's retries, and a request would wait twice)
            try:
                live = self._engine.live_version(self._alias)
            except Exception as exc:
                self._failed = (time.monotonic(), exc)
                raise
            self._failed = None
            self._checked = time.monotonic()
            self._close_retired(older_than=self._retired_grace_s)
            if live is None:
                if self._current is None:
                    raise IndexNotFoundError(f"alias {self._alias!r} does not point at any version yet")
                return self._current[1]
            if self._current is None or self._current[0] != live.version:
                embedder = self._embedders.get(live.model_id) if self._embedders else None
                services = self._build(PinnedEngine(self._engine, self._alias, live.version), embedder)
                if self._current is not None:
                    self._current[1].retire()
                    self._retired.append((time.monotonic(), self._current[1]))  # requests in flight may use it
                self._current = (live.version, services)
            return self._current[1]

    def _close_retired(self, older_than: float) -> None:
        now = time.monotonic()
        due = [services for at, services in self._retired if now - at >= older_than]
        self._retired = [(at, services) for at, services in self._retired if now - at < older_than]
        for services in due:
            services.close()

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None and self._follower.is_alive():
            self._follower.join(timeout=10)
        with self._lock:
            self._close_retired(older_than=0.0)
            if self._current is not None:
                self._current[1].close()
