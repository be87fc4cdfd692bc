"""GET|POST /v1/search: the request and the response, and the mapping from the pipeline's result."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.schemas.common import FILTER_DESCRIPTION, QueryText
from services.core.domain import Item
from services.search.facets import DEFAULT_FACETS
from services.search.pipeline import MAX_PAGE_SIZE
from services.search.types import LegReport, Mode, RankedCandidate, SearchResult, SkipReason

MAX_PAGE = 1_000_000


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: QueryText
    facets: list[str] = Field(
        default_factory=list,
        max_length=20,
        description=f"Fields whose values to count over the result list, e.g. {', '.join(DEFAULT_FACETS)} "
        "(or declared keyword attributes, `attributes.<name>`). In a query string: repeat the "
        "parameter or separate with commas.",
    )
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based; a page past the end is empty, with the total.")
    size: int = Field(10, ge=1, le=MAX_PAGE_SIZE, description="Items per page.")
    explain: bool = Field(False, description="Add each stage's scores and ranks per item, and the stage timings.")
    mode: Mode = Field("hybrid", description="`hybrid` (keyword and vector, fused), `keyword` or `vector` alone.")

    @field_validator("facets", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [part.strip() for v in value for part in v.split(",") if part.strip()]
        return value


class SearchParams(SearchOptions):
    """GET: the filter is JSON text in the `filter` parameter."""

    filter: str | None = Field(
        None,
        description=FILTER_DESCRIPTION + " As JSON text.",
        examples=['{"terms": {"categories": ["Drama", "Comedy"]}}'],
    )


class SearchRequest(SearchOptions):
    """POST: the same options as a JSON body; the filter is a JSON object."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "q": "space exploration",
                    "filter": {"term": {"categories": "Sci-Fi"}},
                    "facets": ["categories", "brand"],
                    "size": 10,
                    "explain": True,
                }
            ]
        },
    )

    filter: dict[str, Any] | None = Field(None, description=FILTER_DESCRIPTION)


class StageScore(BaseModel):
    score: float
    rank: int


class RuleEffectOut(BaseModel):
    rule: str
    action: str
    delta: float
    detail: str


class HitExplain(BaseModel):
    retrievers: dict[str, StageScore] = Field(description="Raw score and rank per retriever that found the item.")
    fusion: StageScore
    scoring: StageScore
    features: dict[str, float] = Field(description="What the scorer read (empty until a model scores).")
    reranking: StageScore
    rules: list[RuleEffectOut] = Field(description="Every rule that moved the item (empty until rules exist).")


class SearchHit(BaseModel):
    id: str
    score: float = Field(description="The final score (the last stage's).")
    rank: int = Field(description="1-based position in the whole result list.")
    item: Item
    explain: HitExplain | None = None


class FacetCount(BaseModel):
    value: str
    count: int


class LegOut(BaseModel):
    """One retriever (leg) of a query: hits found, time taken, and why its hits went unused if they did."""

    name: str
    hits: int
    ms: float
    skipped: str | None = Field(None, description="Why its hits went unused, in words; null when they were used.")
    reason: SkipReason | None = Field(
        None,
        description="The same as a code: no_query_vector (no vector of the typed text held yet), "
        "vector_found_nothing (its held vector found nothing above the floor a moment ago), over_budget, "
        "prefix_found_enough (the prefix leg filled the answer, no typo to forgive).",
    )
    held: bool = Field(
        False,
        description="Its hits were found by an earlier search of the same query vector and filter, with no write "
        "since (suggest's vector leg, searched while the typist paused).",
    )

    @classmethod
    def of(cls, leg: LegReport) -> LegOut:
        return cls(name=leg.name, hits=leg.hits, ms=leg.ms, skipped=leg.skipped, reason=leg.reason, held=leg.held)


class SearchExplain(BaseModel):
    legs: list[LegOut]
    fusion: str
    scorer: str
    reranker: str
    depth: int = Field(description="Hits asked of each retriever.")
    timings_ms: dict[str, float]
    retrieval: str = Field("", description="How candidates were generated (the retrievers, or a feedback pass).")


class SearchResponse(BaseModel):
    query_id: uuid.UUID = Field(description="Quote it when reporting interactions with these results.")
    q: str
    mode: Mode
    total: int = Field(description="Length of the whole result list: the fused candidates of all retrievers.")
    page: int
    size: int
    items: list[SearchHit]
    facets: dict[str, list[FacetCount]]
    explain: SearchExplain | None = None

    @classmethod
    def from_result(cls, result: SearchResult, *, mode: Mode, explain: bool) -> SearchResponse:
        return cls(
            query_id=uuid.UUID(result.query.query_id),
            q=result.query.text,
            mode=mode,
            total=result.total,
            page=result.page,
            size=result.size,
            items=[_hit(c, explain) for c in result.items],
            facets={
                f: [FacetCount(value=v.value, count=v.count) for v in values] for f, values in result.facets.items()
            },
            explain=_explain(result) if explain else None,
        )


def _hit(c: RankedCandidate, explain: bool) -> SearchHit:
    detail = None
    if explain:
        cand = c.candidate
        detail = HitExplain(
            retrievers={n: StageScore(score=cand.scores[n], rank=cand.ranks[n]) for n in cand.ranks},
            fusion=StageScore(score=c.fused.score, rank=c.fused.rank),
            scoring=StageScore(score=c.scored.score, rank=c.scored.rank),
            features=dict(c.scored.features),
            reranking=StageScore(score=c.score, rank=c.rank),
            rules=[RuleEffectOut(rule=e.rule, action=e.action, delta=e.delta, detail=e.detail) for e in c.effects],
        )
    return SearchHit(id=c.id, score=c.score, rank=c.rank, item=c.item, explain=detail)


def _explain(result: SearchResult) -> SearchExplain:
    e = result.explain
    return SearchExplain(
        legs=[LegOut.of(leg) for leg in e.legs],
        fusion=e.fuser,
        scorer=e.scorer,
        reranker=e.reranker,
        depth=e.depth,
        timings_ms=dict(e.timings_ms),
        retrieval=e.retrieval,
    )
