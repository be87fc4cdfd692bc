"""GET /v1/suggest: search-as-you-type."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas.common import FILTER_DESCRIPTION, QueryText
from services.api.schemas.search import LegOut
from services.core.domain import AttributeValue
from services.search.suggest import MAX_SUGGEST_SIZE, SuggestResult


class SuggestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: QueryText
    size: int = Field(5, ge=1, le=MAX_SUGGEST_SIZE, description="Items to suggest.")
    completions: int = Field(5, ge=0, le=MAX_SUGGEST_SIZE, description="Query completions to suggest.")
    filter: str | None = Field(None, description=FILTER_DESCRIPTION + " As JSON text.")


class ItemSummary(BaseModel):
    """An item without its body: what a suggestion list shows, light enough to send on every keystroke."""

    id: str
    title: str
    brand: str | None
    categories: list[str]
    tags: list[str]
    price: float | None
    rating: float | None
    popularity: float | None
    published_at: datetime | None
    attributes: dict[str, AttributeValue]


class CompletionOut(BaseModel):
    text: str = Field(description="A completed query, lower-cased, cut from a matching title.")
    score: float


class SuggestItemOut(BaseModel):
    id: str
    score: float
    sources: list[str] = Field(description="Legs that found it: prefix, fuzzy, vector.")
    item: ItemSummary


class SuggestResponse(BaseModel):
    query_id: uuid.UUID
    q: str
    completions: list[CompletionOut]
    items: list[SuggestItemOut]
    legs: list[LegOut] = Field(description="Each leg's hits and time; a vector leg over its budget says so.")

    @classmethod
    def from_result(cls, result: SuggestResult) -> SuggestResponse:
        # One validation pass over plain data, each item read by attribute: building every nested model on its
        # own (and each summary by dumping its item first) cost about twice as much per keystroke.
        return cls.model_validate(
            {
                "query_id": result.query_id,
                "q": result.text,
                "completions": [{"text": c.text, "score": c.score} for c in result.completions],
                "items": [
                    {"id": i.id, "score": i.score, "sources": list(i.sources), "item": i.item} for i in result.items
                ],
                "legs": [{"name": g.name, "hits": g.hits, "ms": g.ms, "skipped": g.skipped} for g in result.legs],
            },
            from_attributes=True,
        )
