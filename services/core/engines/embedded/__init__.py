from services.core.engines.embedded.engine import EmbeddedEngine

__all__ = ["EmbeddedEngine"]
