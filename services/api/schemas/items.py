"""GET /v1/items/{id}/similar."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas.common import FILTER_DESCRIPTION
from services.core.domain import Item
from services.search.pipeline import MAX_PAGE_SIZE
from services.search.similar import SimilarResult


class SimilarParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(10, ge=1, le=MAX_PAGE_SIZE)
    filter: str | None = Field(None, description=FILTER_DESCRIPTION + " As JSON text.")


class SimilarHit(BaseModel):
    id: str
    score: float = Field(description="Cosine similarity to the item.")
    rank: int
    item: Item


class SimilarResponse(BaseModel):
    query_id: uuid.UUID
    id: str = Field(description="The item the others are similar to (never among them).")
    items: list[SimilarHit]

    @classmethod
    def from_result(cls, result: SimilarResult) -> SimilarResponse:
        return cls(
            query_id=uuid.UUID(result.query_id),
            id=result.item_id,
            items=[SimilarHit(id=h.id, score=h.score, rank=h.rank, item=h.item) for h in result.items],
        )
