"""The opensearch-py client built from settings, and the one retry policy for transient failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, TransportError

from services.core.errors import TransientEngineError
from services.core.settings import OpenSearchSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def build_client(settings: OpenSearchSettings) -> OpenSearch:
    auth = None
    if settings.username and settings.password:
        auth = (settings.username, settings.password.get_secret_value())
    return OpenSearch(
        hosts=settings.hosts,
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ca_certs=str(settings.ca_certs) if settings.ca_certs else None,
        timeout=settings.timeout_s,
        max_retries=0,  # retries happen in `retrying`, with backoff, not in the transport
        http_compress=settings.http_compress,
    )


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSConnectionError | ConnectionTimeout):
        return True
    return isinstance(exc, TransportError) and exc.status_code in RETRYABLE_STATUS


class Retrier:
    """Runs a call, retrying transient failures with exponential backoff; the rest raise at once."""

    def __init__(self, settings: OpenSearchSettings) -> None:
        self._attempts = settings.max_retries + 1
        self._backoff = settings.retry_backoff_s

    def delay(self, attempt: int) -> float:
        return float(self._backoff * (2**attempt))

    def __call__(self, fn: Callable[[], T]) -> T:
        for attempt in range(self._attempts):
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == self._attempts - 1:
                    raise TransientEngineError(
                        f"OpenSearch unavailable after {self._attempts} attempts: {exc}"
                    ) from exc
                log.warning(
                    "transient OpenSearch error (%s), retry %d in %.1fs",
                    exc,
                    attempt + 1,
                    self.delay(attempt),
                )
                time.sleep(self.delay(attempt))
        raise AssertionError("unreachable")
