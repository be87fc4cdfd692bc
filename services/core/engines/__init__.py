"""Search engines behind one contract (`base.SearchEngine`): OpenSearch for scale, embedded for one machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.core.engines.base import SearchEngine
    from services.core.settings import CoreSettings


def build_engine(settings: CoreSettings) -> SearchEngine:
    """The engine the settings name; the adapters are imported only when chosen."""
    if settings.engine == "opensearch":
        from services.core.engines.opensearch import OpenSearchEngine

        return OpenSearchEngine(settings)
    from services.core.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(settings)
