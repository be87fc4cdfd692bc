"""Shared fixtures: settings pointing at a per-test data dir, and the real OpenSearch node when one answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import BlobSettings, CoreSettings, EmbeddedSettings, OpenSearchSettings

S3_URL = os.environ.get("TRAWL_TEST_S3_URL", "http://127.0.0.1:5000")
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


@pytest.fixture
def s3_settings() -> Iterator[BlobSettings]:
    """A fresh bucket on the moto server (skipped when none answers, failed when CI requires services)."""
    import urllib.request

    try:
        urllib.request.urlopen(S3_URL, timeout=1)
    except OSError:
        if os.environ.get("TRAWL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"no S3 (moto) answers at {S3_URL}")
        pytest.skip(f"no S3 (moto) answers at {S3_URL}")
    except Exception:  # an HTTP error status still means a server answered
        pass
    yield BlobSettings(
        kind="s3", bucket=f"t-{uuid.uuid4().hex[:10]}", prefix="t/", endpoint_url=S3_URL,
        access_key_id="test", secret_access_key="test",  # type: ignore[arg-type]
    )  # fmt: skip
