from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.core.domain import CatalogSchema, Item
from services.core.errors import ValidationError
from services.core.filters import Term
from services.search.cache import CachingEmbedder
from services.search.facets import FacetCounter
from services.search.fusion import RRFFuser
from services.search.pipeline import SearchPipeline, legs_for
from services.search.protocols import Fuser, Reranker, Retriever, Scorer
from services.search.reranking import NoopReranker
from services.search.retrievers import CandidateGenerator
from services.search.scoring import PassthroughScorer
from services.search.types import Candidate, SearchQuery

pytestmark = pytest.mark.unit


def item(i: int, **fields: object) -> Item:
    return Item.parse({"id": f"i{i}", "title": f"Title {i}", **fields})


class FakeRetriever:
    def __init__(self, name: str, items: list[Item], delay: float = 0.0) -> None:
        self._name = name
        self._items = items
        self._delay = delay
        self.queries: list[SearchQuery] = []
        self.threads: set[str] = set()

    @property
    def name(self) -> str:
        return self._name

    def run(self, query: SearchQuery) -> list[Candidate]:
        self.queries.append(query)
        self.threads.add(threading.current_thread().name)
        time.sleep(self._delay)
        found = self._items[: query.depth]
        return [Candidate(it.id, it, {self._name: 1.0 / r}, {self._name: r}) for r, it in enumerate(found, start=1)]


def pipeline(retrievers: Sequence[Retriever], executor: ThreadPoolExecutor | None = None) -> SearchPipeline:
    return SearchPipeline(
        CandidateGenerator(retrievers, executor),
        RRFFuser(),
        PassthroughScorer(),
        NoopReranker(),
        FacetCounter(CatalogSchema(), size=3),
    )


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(4) as pool:
        yield pool  # type: ignore[misc]


def test_stage_classes_fill_their_roles() -> None:
    assert isinstance(FakeRetriever("k", []), Retriever)
    assert isinstance(RRFFuser(), Fuser)
    assert isinstance(PassthroughScorer(), Scorer)
    assert isinstance(NoopReranker(), Reranker)


def test_legs_run_concurrently_and_merge_by_id(executor: ThreadPoolExecutor) -> None:
    kw = FakeRetriever("keyword", [item(1), item(2), item(3)], delay=0.3)
    vec = FakeRetriever("vector", [item(3), item(4)], delay=0.3)
    start = time.perf_counter()
    result = pipeline([kw, vec], executor).run(SearchQuery("film"))
    assert time.perf_counter() - start < 0.55  # two 0.3 s legs side by side, not one after the other
    assert kw.threads.isdisjoint(vec.threads)
    assert result.total == 4
    by_id = {c.id: c for c in result.items}
    assert by_id["i3"].candidate.ranks == {"keyword": 3, "vector": 1}
    assert [leg.name for leg in result.explain.legs] == ["keyword", "vector"]
    assert [leg.hits for leg in result.explain.legs] == [3, 2]


def test_passthrough_and_noop_keep_the_fused_order_and_scores() -> None:
    kw = FakeRetriever("keyword", [item(i) for i in range(5)])
    vec = FakeRetriever("vector", [item(i) for i in (4, 3, 9)])
    result = pipeline([kw, vec]).run(SearchQuery("x"), size=10)
    fused = RRFFuser().run(CandidateGenerator([kw, vec]).run(SearchQuery("x")).candidates)
    assert [c.id for c in result.items] == [f.id for f in fused]
    for c in result.items:
        assert c.score == c.scored.score == c.fused.score
        assert c.rank == c.scored.rank == c.fused.rank
        assert c.effects == ()


def test_paging_and_a_page_past_the_end() -> None:
    kw = FakeRetriever("keyword", [item(i) for i in range(25)])
    p = pipeline([kw])
    first = p.run(SearchQuery("x"), page=1, size=10)
    third = p.run(SearchQuery("x"), page=3, size=10)
    past = p.run(SearchQuery("x"), page=4, size=10)
    assert first.total == third.total == past.total == 25
    assert [c.rank for c in first.items] == list(range(1, 11))
    assert [c.rank for c in third.items] == list(range(21, 26))
    assert past.items == []


def test_depth_and_filter_and_legs_reach_the_retrievers() -> None:
    kw = FakeRetriever("keyword", [item(i) for i in range(50)])
    vec = FakeRetriever("vector", [item(i) for i in range(50)])
    flt = Term("brand", "Acme")
    p = pipeline([kw, vec])
    p.run(SearchQuery("  Ame\u0301lie   film ", flt, depth=7, legs=legs_for("keyword")))
    assert vec.queries == []
    (q,) = kw.queries
    assert q.filter == flt and q.depth == 7 and q.text == "Amélie film"  # NFC, whitespace collapsed
    with pytest.raises(ValidationError) as err:
        pipeline([kw]).run(SearchQuery("x", legs=legs_for("vector")))
    assert err.value.field == "mode"


def test_bad_input_is_refused_before_any_retrieval() -> None:
    kw = FakeRetriever("keyword", [item(1)])
    p = pipeline([kw])
    for kwargs, field in [
        ({"facets": ["colour"]}, "facets"),
        ({"size": 1001}, "size"),
        ({"page": 0}, "page"),
    ]:
        with pytest.raises(ValidationError) as err:
            p.run(SearchQuery("x"), **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        p.run(SearchQuery(" \t "))
    assert err.value.field == "q"
    assert kw.queries == []


def test_facets_count_the_whole_list_not_the_page() -> None:
    items = [
        item(i, categories=["Drama"] + (["Comedy"] if i % 2 else []), brand=f"b{i % 3}", tags=["t", "t"])
        for i in range(9)
    ]
    result = pipeline([FakeRetriever("keyword", items)]).run(
        SearchQuery("x"), size=2, facets=["categories", "brand", "tags"]
    )
    assert len(result.items) == 2
    facets = {f: [(v.value, v.count) for v in vs] for f, vs in result.facets.items()}
    assert facets["categories"] == [("Drama", 9), ("Comedy", 4)]
    assert facets["brand"] == [("b0", 3), ("b1", 3), ("b2", 3)]
    assert facets["tags"] == [("t", 9)]  # an item counts once per value


def test_facet_fields_include_declared_keyword_attributes() -> None:
    schema = CatalogSchema.model_validate({"attributes": {"colour": "keyword", "weight": "number"}})
    counter = FacetCounter(schema)
    assert "attributes.colour" in counter.fields and "attributes.weight" not in counter.fields
    assert "id" not in counter.fields
    items = [Item.parse({"id": "a", "attributes": {"colour": "red"}}), Item.parse({"id": "b"})]
    assert counter.run(items, ["attributes.colour"])["attributes.colour"][0].count == 1


def test_explain_times_every_stage() -> None:
    result = pipeline([FakeRetriever("keyword", [item(1)])]).run(SearchQuery("x"))
    assert set(result.explain.timings_ms) == {
        "retrieval",
        "fusion",
        "scoring",
        "reranking",
        "facets",
        "total",
    }
    assert result.explain.scorer.startswith("passthrough") and result.explain.reranker.startswith("none")


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return "fake"

    @property
    def dimension(self) -> int:
        return 4

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)


def test_caching_embedder_is_an_lru_of_query_vectors() -> None:
    inner = CountingEmbedder()
    cache = CachingEmbedder(inner, maxsize=2)
    a = cache.embed(["a"])
    cache.embed(["a", "bb"])
    assert inner.calls == [["a"], ["bb"]]
    cache.embed(["a"])  # a is now the most recent
    cache.embed(["ccc"])  # evicts bb
    cache.embed(["bb", "a"])
    assert inner.calls[-1] == ["bb"]
    assert cache.embed(["a"]).tolist() == a.tolist()
    info = cache.cache_info()
    assert info.size == 2 and info.hits >= 3 and info.misses == 4
    got = cache.embed(["a"])
    got[0][0] = 99.0  # a caller changing its answer does not change the cache
    assert cache.embed(["a"]).tolist() == a.tolist()


def test_query_ids_are_version_4_uuids_that_a_seeded_global_generator_or_a_fork_cannot_repeat() -> None:
    import multiprocessing
    import random
    import uuid

    from services.search.types import new_query_id

    ids = set()
    for _ in range(2):
        random.seed(7)  # a library seeding the global generator
        ids.add(new_query_id())
    assert len(ids) == 2 and all(uuid.UUID(i).version == 4 for i in ids)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        in_child = pool.apply(new_query_id)
    assert in_child != new_query_id()  # the child's generator was reseeded, not copied with the parent's state
