"""Shared fixtures: settings pointing at a per-test data dir, and the real OpenSearch node when one answers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import CoreSettings, EmbeddedSettings, OpenSearchSettings

OPENSEARCH_URL = os.environ.get("TRAWL_TEST_OPENSEARCH_URL", "http://127.0.0.1:9200")
REQUIRE_OPENSEARCH = os.environ.get("TRAWL_REQUIRE_OPENSEARCH") == "1"


def _opensearch_answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def settings(tmp_path: Path) -> CoreSettings:
    return CoreSettings(data_dir=tmp_path / "var")


@pytest.fixture(scope="session")
def opensearch_settings() -> OpenSearchSettings:
    if not _opensearch_answers(OPENSEARCH_URL):
        message = f"no OpenSearch node answers at {OPENSEARCH_URL} (start one with `make services-up`)"
        if REQUIRE_OPENSEARCH:
            pytest.fail(message)
        pytest.skip(message)
    return OpenSearchSettings(hosts=[OPENSEARCH_URL], max_retries=3, retry_backoff_s=0.2)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Iterator[CoreSettings]:
    # exact_search_below=0 sends every filtered k-NN query through the HNSW graph walk, the hard path.
    yield CoreSettings(data_dir=tmp_path / "var", embedded=EmbeddedSettings(exact_search_below=0))
