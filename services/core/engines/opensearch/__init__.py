from services.core.engines.opensearch.engine import OpenSearchEngine

__all__ = ["OpenSearchEngine"]
