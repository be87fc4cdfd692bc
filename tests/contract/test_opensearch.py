from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest

from services.core.engines.opensearch import OpenSearchEngine
from services.core.settings import CoreSettings, OpenSearchSettings
from tests.contract.suite import EngineContract, doc, vec

pytestmark = [pytest.mark.contract, pytest.mark.opensearch]


class TestOpenSearchEngine(EngineContract):
    @pytest.fixture
    def engine(self, opensearch_settings: OpenSearchSettings) -> Iterator[OpenSearchEngine]:
        engine = OpenSearchEngine(CoreSettings(engine="opensearch", opensearch=opensearch_settings))
        yield engine
        engine.close()

    def test_get_vectors_reads_packed_bytes_and_falls_back_to_the_source(
        self, engine: OpenSearchEngine, alias: str
    ) -> None:
        """Adapter-specific: vectors come from the stored `vector_bytes` field, not the float array of the
        source; a document written before versions kept the bytes is still read, from its source."""
        self.write(engine, alias, [doc(1), doc(2)])
        index = engine._name(alias, None)
        raw = engine._client.mget(index=index, body={"ids": ["item-1"]}, stored_fields=["vector_bytes"], _source=False)
        packed = raw["docs"][0]["fields"]["vector_bytes"][0]
        assert np.allclose(np.frombuffer(base64.b64decode(packed), dtype="<f4"), vec(1), atol=1e-6)
        # an older document: the float array only
        older = doc(3).item.to_json() | {"content_hash": doc(3).item.content_hash, "vector": vec(3).tolist()}
        engine._client.index(index=index, id="item-3", body=older, refresh=True)
        got = engine.get_vectors(alias, ["item-3", "item-1", "item-2"])
        assert set(got) == {"item-1", "item-2", "item-3"}
        for i in (1, 2, 3):
            assert np.allclose(got[f"item-{i}"], vec(i), atol=1e-6)
        # searches and plain reads never carry the bytes into an item
        (stored,) = engine.get(alias, ["item-1"], with_vectors=True)
        assert stored.vector is not None and stored.item.id == "item-1"

    def test_retrieval_hits_carry_their_stored_vectors_and_suggest_hits_do_not(
        self, engine: OpenSearchEngine, alias: str
    ) -> None:
        """Adapter-specific: the keyword and vector legs fetch each hit's stored bytes with its source, so that
        scoring needs no second read; suggest, which never scores by vector, does not pay for them."""
        self.write(engine, alias, [doc(1, "Vector walrus one"), doc(2, "Vector walrus two")])
        for hits in (engine.keyword_search(alias, "walrus", k=5), engine.vector_search(alias, vec(2), k=2)):
            assert {h.id for h in hits} == {"item-1", "item-2"}
            for h in hits:
                assert h.vector is not None and np.allclose(h.vector, vec(int(h.id[-1])), atol=1e-6)
                assert h.item.title.startswith("Vector walrus")  # the source still comes with it
        assert all(h.vector is None for h in engine.prefix_suggest(alias, "vector wal", k=5))
