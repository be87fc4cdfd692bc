"""Fixtures for tests against real services: Redis (broker), OpenSearch (engine), moto (S3)."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.ledger import EventLedger, EventState
from services.core.engines.opensearch import OpenSearchEngine
from services.core.settings import CoreSettings, OpenSearchSettings
from tests.support.index import drop_opensearch_indices
from tests.support.processes import ApiServer, Worker

REDIS_URL = os.environ.get("TRAWL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MOTO_URL = os.environ.get("TRAWL_TEST_MOTO_URL", "http://127.0.0.1:5000")
OPENSEARCH_URL = os.environ.get("TRAWL_TEST_OPENSEARCH_URL", "http://127.0.0.1:9200")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def stack_up() -> None:
    missing = [
        name
        for name, ok in (
            ("OpenSearch", _answers(f"{OPENSEARCH_URL}/_cluster/health")),
            ("Redis", _redis_answers()),
            ("moto", _answers(f"{MOTO_URL}/moto-api/")),
        )
        if not ok
    ]
    if missing:
        message = f"services not running: {', '.join(missing)} (start them with `make services-up`)"
        if os.environ.get("TRAWL_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def stack_env(stack_up: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings of one test's deployment on the real stack: its own alias, queues, bucket and data dir. Its
    indices are dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    yield {
        "TRAWL_ENGINE": "opensearch",
        "TRAWL_OPENSEARCH__HOSTS": f'["{OPENSEARCH_URL}"]',
        "TRAWL_INDEX_ALIAS": f"it-{tag}",
        "TRAWL_DATA_DIR": str(tmp_path / "var"),
        "TRAWL_BROKER_URL": REDIS_URL,
        "TRAWL_QUEUES__QUEUE": f"ingest-{tag}",
        "TRAWL_QUEUES__CONTROL_QUEUE": f"control-{tag}",
        "TRAWL_BLOBS__KIND": "s3",
        "TRAWL_BLOBS__BUCKET": f"sot-{tag}",
        "TRAWL_BLOBS__ENDPOINT_URL": MOTO_URL,
        "TRAWL_BLOBS__ACCESS_KEY_ID": "test",
        "TRAWL_BLOBS__SECRET_ACCESS_KEY": "test",
        "TRAWL_PIPELINE__RECONCILE_EVERY_S": "2",
    }
    drop_opensearch_indices(OPENSEARCH_URL, f"it-{tag}")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start the API or a worker with given settings; everything started is stopped at the end."""
    started: list[ApiServer | Worker] = []

    def start(kind: str, env: dict[str, str], **kw: Any) -> ApiServer | Worker:
        log = tmp_path / f"{kind}-{len(started)}.log"
        proc = ApiServer(env, log) if kind == "api" else Worker(env, log, **kw)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
    for proc in started:  # shown when a test fails
        print(f"--- {proc.log.name}\n{proc.tail(30)}")


def wait_until_done(ledger: EventLedger, timeout: float, expect: int | None = None) -> dict[str, int]:
    """Wait until nothing is queued or in flight; returns the ledger's counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = ledger.counts()
        busy = counts[EventState.QUEUED.value] + counts[EventState.PROCESSING.value]
        total = sum(counts.values())
        if busy == 0 and (expect is None or total >= expect):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"events still pending after {timeout} s: {counts}")
        time.sleep(0.5)


def searchable(env: dict[str, str]) -> None:
    """On the stack, what the ledger calls indexed is searchable after OpenSearch's next refresh (1 s): one now,
    so that a search right after `wait_until_done` does not race it. The embedded engine shows a write at once."""
    if "TRAWL_OPENSEARCH__HOSTS" not in env:
        return
    engine = OpenSearchEngine(CoreSettings(engine="opensearch", opensearch=OpenSearchSettings(hosts=[OPENSEARCH_URL])))
    try:
        engine.refresh(env["TRAWL_INDEX_ALIAS"])
    finally:
        engine.close()
