"""The pseudo-relevance feedback stage: what it feeds back, where the filter goes, and how it is wired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pytest

from services.core.domain import Item
from services.core.engines.base import Hit, SearchEngine, StoredDocument, Vector
from services.core.filters import Filter, Term
from services.search.feedback import FeedbackGenerator, FeedbackSettings, TermStats, expansion_terms, rocchio
from services.search.fusion import RRFFuser
from services.search.protocols import CandidateSource
from services.search.retrievers import CandidateGenerator, KeywordRetriever, VectorRetriever
from services.search.types import Candidate, SearchQuery

pytestmark = pytest.mark.unit

DOCS = {
    "a": ("Boundary layer flow", "The laminar boundary layer flow over a flat plate; transition of the flow."),
    "b": ("Layer transition", "Transition of the laminar flow in a boundary layer at high speed."),
    "c": ("Wing flutter", "Flutter of a swept wing at supersonic speed."),
    "d": ("Laminar flow plate", "Laminar flow and transition measured over a heated plate."),
}
VECTORS = {
    "a": np.array([1.0, 0.0, 0.0], np.float32),
    "b": np.array([0.8, 0.6, 0.0], np.float32),
    "c": np.array([0.0, 0.0, 1.0], np.float32),
    "d": np.array([0.0, 1.0, 0.0], np.float32),
}


def make_item(i: str) -> Item:
    return Item.parse({"id": i, "title": DOCS[i][0], "body": DOCS[i][1]})


class FakeEngine:
    """Keyword search: documents sharing a word with the text, by how many; vector search: by dot product."""

    def __init__(self) -> None:
        self.keyword_calls: list[tuple[str, Filter | None]] = []
        self.keyword_terms: list[Mapping[str, float] | None] = []
        self.vector_calls: list[tuple[Vector, Filter | None]] = []
        self.got: list[list[str]] = []

    def keyword_search(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        boosts: Mapping[str, float] | None = None,
        filter: Filter | None = None,
        terms: Mapping[str, float] | None = None,
    ) -> list[Hit]:
        self.keyword_calls.append((text, filter))
        self.keyword_terms.append(terms)
        words = set(text.lower().split()) | set(terms or {})
        scored = []
        for i, (title, body) in DOCS.items():
            overlap = len(words & set(f"{title} {body}".lower().replace(";", "").replace(".", "").split()))
            if overlap:
                scored.append((overlap, i))
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [Hit(i, float(s), make_item(i)) for s, i in scored[:k]]

    def vector_search(self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None) -> list[Hit]:
        self.vector_calls.append((np.asarray(vector), filter))
        scored = sorted(((float(VECTORS[i] @ vector), i) for i in DOCS), key=lambda x: (-x[0], x[1]))
        return [Hit(i, s, make_item(i)) for s, i in scored[:k]]

    def get(self, alias: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredDocument]:
        self.got.append(list(ids))
        return [StoredDocument(make_item(i), "h", VECTORS[i] if with_vectors else None) for i in ids]


class FixedEmbedder:
    model_id = "fixed"
    dimension = 3

    def embed(self, texts: Sequence[str]) -> Any:
        return np.array([[1.0, 0.0, 0.0]] * len(texts), np.float32)


def build(settings: FeedbackSettings | None = None) -> tuple[FeedbackGenerator, FakeEngine]:
    engine = FakeEngine()
    se = cast(SearchEngine, engine)
    kw = KeywordRetriever(se, "idx")
    vec = VectorRetriever(se, "idx", FixedEmbedder())  # type: ignore[arg-type]
    gen = FeedbackGenerator(
        CandidateGenerator([kw, vec]),
        RRFFuser(),
        kw,
        vec,
        se,
        "idx",
        settings or FeedbackSettings(enabled=True, terms=3, docs=2, vector_docs=2),
    )
    return gen, engine


def test_expansion_terms_come_from_the_top_documents_not_the_query() -> None:
    stats = TermStats()
    cands = [Candidate(i, make_item(i), {}, {}) for i in "abcd"]
    weighted = expansion_terms(stats, "boundary layer", cands[:2], cands, 3)
    terms = [word for word, _ in weighted]
    assert "boundary" not in terms and "layer" not in terms  # the query's own stems are excluded
    assert terms[:2] == ["flow", "transition"]  # frequent in both top documents
    assert "high" in terms  # once, but in no other candidate: a high idf over the pool
    assert "flutter" not in terms  # only in a document outside the top two
    assert sum(w for _, w in weighted) == pytest.approx(1.0) and weighted[0][1] >= weighted[-1][1]
    assert expansion_terms(stats, "boundary layer", cands[:2], cands, 0) == []


def test_rocchio_moves_the_query_towards_the_documents_and_stays_unit_length() -> None:
    q = np.array([1.0, 0.0, 0.0], np.float32)
    moved = rocchio(q, [np.array([0.0, 1.0, 0.0], np.float32)], 1.0)
    assert float(np.linalg.norm(moved)) == pytest.approx(1.0)
    assert moved[1] > 0.5 and moved[0] > 0.5
    assert np.array_equal(rocchio(q, [], 1.0), q)


def test_second_pass_expands_the_keyword_query_moves_the_vector_and_keeps_the_filter() -> None:
    gen, engine = build()
    assert isinstance(gen, CandidateSource)
    flt = Term("brand", "x")
    result = gen.run(SearchQuery("boundary layer", flt, depth=10))
    (first_text, _), (second_text, _) = engine.keyword_calls
    assert first_text == second_text == "boundary layer" and engine.keyword_terms[0] is None
    added = engine.keyword_terms[1]
    assert added is not None and len(added) == 3
    assert gen.last is not None and set(gen.last.terms) == set(added)
    # RM3 weights: the feedback part weighs as much as the query's two words (query_weight 0.5), best term first
    assert sum(added.values()) == pytest.approx(2.0) and list(added.values()) == sorted(added.values(), reverse=True)
    # both passes, both legs, carry the query's filter
    assert [f for _, f in engine.keyword_calls] == [flt, flt]
    assert [f for _, f in engine.vector_calls] == [flt, flt]
    # Rocchio: the second vector moved off the query vector towards the top fused documents' vectors
    first_vec, second_vec = (v for v, _ in engine.vector_calls)
    assert np.array_equal(first_vec, np.array([1, 0, 0], np.float32))
    assert second_vec[1] > 0 and float(np.linalg.norm(second_vec)) == pytest.approx(1.0)
    assert len(engine.got) == 1 and len(engine.got[0]) == 2
    # candidates are typed, under the legs' own names; explain names the passes
    assert all(isinstance(c, Candidate) and set(c.ranks) <= {"keyword", "vector"} for c in result.candidates)
    names = [leg.name for leg in result.legs]
    assert names == ["keyword (first pass)", "vector (first pass)", "feedback", "keyword", "vector"]
    assert "feedback" in gen.name and "rm3" in gen.name


def test_a_keyword_only_query_runs_no_vector_leg_in_either_pass() -> None:
    gen, engine = build()
    result = gen.run(SearchQuery("boundary layer", legs=("keyword",)))
    assert engine.vector_calls == [] and engine.got == []
    assert len(engine.keyword_calls) == 2
    assert all(set(c.ranks) == {"keyword"} for c in result.candidates)


def test_the_feedback_stage_is_wired_from_settings_and_named_in_explain() -> None:
    from services.core.domain import CatalogSchema
    from services.core.settings import CoreSettings
    from services.search.service import build_search_services
    from services.search.settings import SearchSettings

    core = CoreSettings(engine="embedded", index_alias="idx", catalog=CatalogSchema())
    engine = FakeEngine()
    off = build_search_services(core, SearchSettings(), cast(SearchEngine, engine), FixedEmbedder())  # type: ignore[arg-type]
    on = build_search_services(
        core,
        SearchSettings.model_validate({"feedback": {"enabled": True}}),
        cast(SearchEngine, engine),
        FixedEmbedder(),  # type: ignore[arg-type]
    )
    try:
        plain = off.pipeline.run(SearchQuery("boundary layer"))
        assert "feedback" not in plain.explain.retrieval
        assert len(engine.keyword_calls) == 1
        fed = on.pipeline.run(SearchQuery("boundary layer"))
        assert fed.explain.retrieval.startswith("feedback(")
        assert len(engine.keyword_calls) == 3
        assert "feedback" in [leg.name for leg in fed.explain.legs]
    finally:
        off.close()
        on.close()


def test_each_thread_sees_the_feedback_of_its_own_last_run() -> None:
    import threading

    gen, _ = build()
    gen.run(SearchQuery("boundary layer", None, depth=10))
    mine = gen.last
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(gen.last))
    other.start()
    other.join()
    assert mine is not None and seen == [None]  # another thread's request never reads this one's terms
