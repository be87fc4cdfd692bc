"""Fixtures every end-to-end module shares: the embedding model and the film catalog, each built once a session
(loading the model and embedding 300 films are the slow part of these tests)."""

from __future__ import annotations

import pytest

from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines.base import Document
from services.core.settings import EmbeddingSettings

FILMS = 300


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def film_documents(embedder: SentenceTransformerEmbedder) -> list[Document]:
    """The FILMS most reviewed films of the `bokeh-sampledata` catalog, with their vectors."""
    pytest.importorskip("bokeh_sampledata", reason="the film catalog comes from the bokeh-sampledata package")
    from tests.e2e.films import embedding_text, load_films

    items = load_films(FILMS)
    vectors = embedder.embed([embedding_text(i) for i in items])
    return [Document(i, v) for i, v in zip(items, vectors, strict=True)]
