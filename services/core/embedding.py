"""The Embedder role and its sentence-transformers implementation, loaded offline from a folder or a package."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from services.core.errors import TrawlError
from services.core.settings import EmbeddingSettings

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


class ModelNotFoundError(TrawlError):
    pass


def resolve_model(spec: str) -> tuple[Path, str]:
    """`package:name` or a folder path -> (folder, model id). The id names what produced a version's vectors."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ModelNotFoundError(f"embedding model package {name!r} is not installed") from exc
        getter = getattr(module, "get_model_path", None)
        folder = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent
        version = getattr(module, "__version__", None)
        return folder, f"{name}@{version}" if version else name
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(f"embedding model folder {folder} does not exist")
    return folder, folder.resolve().name


class SentenceTransformerEmbedder:
    """sentence-transformers, loaded once from local files (never from a hub)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from sentence_transformers import (
            SentenceTransformer,
        )  # heavy: imported at construction, not at import

        folder, self._model_id = resolve_model(settings.model)
        self._batch_size = settings.batch_size
        self._model = SentenceTransformer(str(folder), device=settings.device, local_files_only=True)
        # sentence-transformers renamed this method in v6; accept both.
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ModelNotFoundError(f"model in {folder} does not report its embedding dimension")
        self._dimension = int(dim)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
