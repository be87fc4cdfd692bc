"""The search pipeline: candidate generation → fusion → scoring → re-ranking → one page and its facets."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from services.core.errors import ValidationError
from services.search.facets import FacetCounter
from services.search.protocols import CandidateSource, Fuser, Reranker, Scorer
from services.search.types import KEYWORD, VECTOR, Explain, Mode, SearchQuery, SearchResult, normalise_text

MAX_DEPTH = 10_000
MAX_PAGE_SIZE = 1000

_MODE_LEGS: dict[str, tuple[str, ...] | None] = {"hybrid": None, "keyword": (KEYWORD,), "vector": (VECTOR,)}


def legs_for(mode: Mode) -> tuple[str, ...] | None:
    """The retriever names a search mode runs (None: every retriever the pipeline has)."""
    return _MODE_LEGS[mode]


class SearchPipeline:
    """Composes the stages. Each is swappable (a Fuser, Scorer or Reranker of any class with the right shape);
    the pipeline only orders them, pages the final list, counts facets and times each step."""

    def __init__(
        self,
        generator: CandidateSource,
        fuser: Fuser,
        scorer: Scorer,
        reranker: Reranker,
        facets: FacetCounter,
    ) -> None:
        self.generator = generator
        self.fuser = fuser
        self.scorer = scorer
        self.reranker = reranker
        self.facets = facets

    def run(self, query: SearchQuery, *, page: int = 1, size: int = 10, facets: Sequence[str] = ()) -> SearchResult:
        text = normalise_text(query.text)
        if not text:
            raise ValidationError("q", "must not be empty")
        if not 1 <= query.depth <= MAX_DEPTH:
            raise ValidationError("depth", f"must be between 1 and {MAX_DEPTH}")
        if page < 1:
            raise ValidationError("page", "must be >= 1")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValidationError("size", f"must be between 1 and {MAX_PAGE_SIZE}")
        fields = self.facets.check(facets)  # before any work: a bad facet name costs nothing
        query = dataclasses.replace(query, text=text)

        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 3)
            clock = now

        start = clock
        found = self.generator.run(query)
        lap("retrieval")
        fused = self.fuser.run(found.candidates)
        lap("fusion")
        scored = self.scorer.run(query, fused)
        lap("scoring")
        ranked = self.reranker.run(query, scored)
        lap("reranking")
        offset = (page - 1) * size
        items = ranked[offset : offset + size]
        counts = self.facets.run((c.item for c in ranked), fields)
        lap("facets")
        timings["total"] = round((clock - start) * 1000, 3)
        explain = Explain(
            found.legs,
            self.fuser.name,
            self.scorer.name,
            self.reranker.name,
            query.depth,
            timings,
            self.generator.name,
        )
        return SearchResult(query, len(ranked), page, size, items, counts, explain)
