"""Where the alias points is checked in the background (services/search/live.py), so that no request waits for
the check: an engine that records its checks stands in for the embedded engine or the cluster."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.engines.base import IndexVersion
from services.core.errors import IndexNotFoundError
from services.search.live import LiveSearch

REFRESH_S = 0.05


class AliasEngine:
    """Says where the alias points (None: nowhere yet), or raises what it was told to; counts the checks and the
    threads that made them."""

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.fails: Exception | None = None
        self.delay_s = 0.0
        self.threads: list[str] = []
        self.asked = threading.Event()

    def live_version(self, alias: str) -> IndexVersion | None:
        self.threads.append(threading.current_thread().name)
        self.asked.set()
        time.sleep(self.delay_s)
        if self.fails is not None:
            raise self.fails
        if self.version is None:
            return None
        return IndexVersion(alias, self.version, f"{alias}-v{self.version}", 4, "model", datetime.now(UTC), True, 10)


class Services:
    """What LiveSearch builds per version: here, which version it was built for."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.closed = False
        self.retired = False

    def retire(self) -> None:
        self.retired = True

    def close(self) -> None:
        self.closed = True


def live_search(engine: AliasEngine) -> LiveSearch:
    build: Callable[[Any, Any], Any] = lambda pinned, _embedder: Services(pinned.version)  # noqa: E731
    return LiveSearch(engine, "items", None, build, refresh_s=REFRESH_S)  # type: ignore[arg-type]


@contextmanager
def following(engine: AliasEngine) -> Iterator[LiveSearch]:
    """A LiveSearch whose follower runs until the block ends, and which is closed then."""
    live = live_search(engine)
    live.follow()
    try:
        yield live
    finally:
        live.close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_with_a_follower_no_request_checks_the_alias_and_a_swap_is_seen() -> None:
    engine = AliasEngine(1)
    with following(engine) as live:
        assert wait_for(lambda: live.fresh() is not None)
        # Twenty refresh intervals of requests: each finds the services fresh, none asks the engine itself.
        end = time.monotonic() + 20 * REFRESH_S
        while time.monotonic() < end:
            held = live.fresh()
            assert held is not None and held.version == 1  # type: ignore[attr-defined]
            time.sleep(REFRESH_S / 10)
        assert set(engine.threads) == {"alias-follower"}
        assert len(engine.threads) >= 10
        first = live.fresh()
        engine.version = 2  # an alias swap (a reindex or a rollback)
        assert wait_for(lambda: getattr(live.fresh(), "version", None) == 2, timeout=20 * REFRESH_S)
        assert live.version == 2
        # the services of version 1 let go of what they held; requests in flight may still use them
        assert first.retired and not first.closed  # type: ignore[attr-defined]
        assert not live.fresh().retired  # type: ignore[attr-defined]
    assert not any(t.name == "alias-follower" and t.is_alive() for t in threading.enumerate())


def test_without_a_follower_a_request_checks_once_the_last_check_is_old() -> None:
    engine = AliasEngine(1)
    live = live_search(engine)
    assert live.fresh() is None
    assert live.current().version == 1  # type: ignore[attr-defined]
    assert live.fresh() is not None and len(engine.threads) == 1
    time.sleep(2 * REFRESH_S)
    assert live.fresh() is None
    assert live.current().version == 1  # type: ignore[attr-defined]
    assert len(engine.threads) == 2 and set(engine.threads) == {threading.current_thread().name}
    live.close()


def test_an_engine_that_stops_answering_sends_requests_to_check_and_fail(caplog: pytest.LogCaptureFixture) -> None:
    engine = AliasEngine(1)
    caplog.set_level(logging.WARNING, logger="services.search.live")
    with following(engine) as live:
        assert wait_for(lambda: live.fresh() is not None)
        engine.fails = ConnectionError("the cluster does not answer")
        assert wait_for(lambda: live.fresh() is None)  # no check has succeeded for two intervals
        with pytest.raises(ConnectionError):
            live.current()  # the request's own check fails as it did before (the API answers 503)
        time.sleep(5 * REFRESH_S)
        said = [r for r in caplog.records if "does not answer" in r.getMessage()]
        assert len(said) == 1  # said once, not once per check
        engine.fails = None
        assert wait_for(lambda: live.fresh() is not None)  # the follower picks up again


def test_an_alias_that_points_nowhere_yet_is_followed_quietly_until_it_does(caplog: pytest.LogCaptureFixture) -> None:
    engine = AliasEngine(None)
    caplog.set_level(logging.WARNING, logger="services.search.live")
    with following(engine) as live:
        time.sleep(4 * REFRESH_S)
        with pytest.raises(IndexNotFoundError):
            live.current()
        engine.version = 1  # the first ingest created and pointed it
        assert wait_for(lambda: getattr(live.fresh(), "version", None) == 1)
        assert not caplog.records


def test_a_request_that_waited_for_a_failing_check_fails_with_it_and_does_not_ask_again() -> None:
    engine = AliasEngine(1)
    with following(engine) as live:
        assert wait_for(lambda: live.fresh() is not None)
        engine.fails = ConnectionError("the cluster does not answer")
        engine.delay_s = 0.5  # its client retries before it gives up
        assert wait_for(lambda: live.fresh() is None)
        engine.asked.clear()
        assert engine.asked.wait(5)  # the follower is in a check now
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            live.current()
        assert time.monotonic() - started < 0.9  # waited for the follower's check, not for one of its own
        assert threading.current_thread().name not in engine.threads
        engine.delay_s = 0.0


def test_the_services_of_a_version_the_alias_left_are_closed_after_a_grace_period() -> None:
    engine = AliasEngine(1)
    build: Callable[[Any, Any], Any] = lambda pinned, _embedder: Services(pinned.version)  # noqa: E731
    live = LiveSearch(engine, "items", None, build, refresh_s=REFRESH_S, retired_grace_s=0.3)  # type: ignore[arg-type]
    live.follow()
    try:
        assert wait_for(lambda: live.fresh() is not None)
        first = live.fresh()
        engine.version = 2
        assert wait_for(lambda: getattr(live.fresh(), "version", None) == 2)
        assert first.retired and not first.closed  # type: ignore[attr-defined]  # requests in flight may use it
        assert wait_for(lambda: first.closed, timeout=2.0)  # type: ignore[attr-defined]
        second = live.fresh()
        assert second is not None and not second.closed  # type: ignore[attr-defined]
    finally:
        live.close()
    assert second.closed  # type: ignore[attr-defined]
