"""Recommendations and the interactions that feed them. Thin handlers over services/recs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from services.api.schemas.common import ERROR_RESPONSES, FILTER_DESCRIPTION, filter_from_json, json_body
from services.core.domain import Item
from services.core.errors import ValidationError
from services.recs import (
    Interaction,
    InteractionStore,
    InteractionType,
    RecommendationRequest,
    RecommendationService,
)
from services.recs.interactions import MAX_POSITION, check_new

router = APIRouter(prefix="/v1", tags=["recommendations"], responses=ERROR_RESPONSES)


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    user_id: str
    item_id: str
    type: str = Field(description="impression, click, add_to_cart, purchase or rating")
    value: float | None = None
    query_id: str | None = None
    position: int | None = Field(None, ge=0, le=MAX_POSITION, description="0-based slot the item was shown in")
    timestamp: datetime | None = None


class InteractionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interactions: list[InteractionIn] = Field(min_length=1, max_length=1000)


def interactions_of(body: Any) -> tuple[list[InteractionIn], bool]:
    """One interaction, or `{"interactions": [...]}` (then True). Validated as the one shape the body has (by
    its key), so an error names the field of that shape, `interactions.3.type` in a batch, not both shapes'."""
    batch = isinstance(body, dict) and "interactions" in body
    try:
        if batch:
            return InteractionsIn.model_validate(body).interactions, True
        return [InteractionIn.model_validate(body)], False
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        ) from None


class RecommendationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    seed_item_ids: list[str] = Field(default_factory=list)
    negative_item_ids: list[str] = Field(default_factory=list)
    exclude_item_ids: list[str] = Field(default_factory=list)
    k: int = 10
    filter: dict[str, Any] | None = Field(None, description=FILTER_DESCRIPTION + " Every candidate source applies it.")


class RecommendedItem(BaseModel):
    id: str
    score: float
    rank: int
    sources: dict[str, dict[str, float]]
    item: Item | None


class RecommendationOut(BaseModel):
    query_id: uuid.UUID
    mode: str = Field(
        description="how the answer was made: `user` (history), `seeds`, `content` (nothing the interaction models "
        "know: nearest items by content), `trending`, or `popular` (nothing learnt yet: the catalog's most popular)"
    )
    ranker: str
    candidates: int
    items: list[RecommendedItem]
    unknown_item_ids: list[str] = Field(
        default_factory=list,
        description="seed and negative ids the catalog does not hold (never ingested, or deleted); the interaction "
        "models may still know a deleted item",
    )


@router.post(
    "/events/interactions",
    status_code=202,
    openapi_extra=json_body(InteractionsIn, InteractionIn),
)
def post_interactions(body: Annotated[Any, Body()], request: Request) -> dict[str, int]:
    """Impressions, clicks, add-to-cart, purchases, ratings: one, or up to 1,000 as `{"interactions": [...]}`,
    stored durably for training and analytics."""
    rows, batch = interactions_of(body)
    now = datetime.now(UTC)
    store: InteractionStore = request.app.state.interactions
    interactions = []
    for n, r in enumerate(rows):
        try:  # Interaction checks the type and the ids itself; check_new what only new ones must meet
            kind = cast(InteractionType, r.type)
            interaction = Interaction(r.user_id, r.item_id, kind, r.timestamp or now, r.value, r.query_id, r.position)
            check_new(interaction)
        except ValidationError as exc:
            raise ValidationError(f"interactions.{n}.{exc.field}" if batch else exc.field, exc.message) from None
        interactions.append(interaction)
    recorded = store.record(interactions)
    return {"recorded": recorded}


@router.post("/recommendations", response_model=RecommendationOut)
def recommend(body: RecommendationIn, request: Request) -> RecommendationOut:
    """For a user (from their recent interactions) or for seed items (with optional negatives); items the user
    already interacted with are excluded; with no history, content similarity, then trending; an answer still
    short of `k` is filled with the catalog's most popular items. `filter` takes the
    neutral filter of /v1/search (422 naming the field when it is not valid) and holds for every item returned."""
    service: RecommendationService = request.app.state.recommendations
    settings = request.app.state.settings
    flt = filter_from_json(body.filter, settings.catalog)
    result = service.run(
        RecommendationRequest(
            user_id=body.user_id,
            seed_item_ids=tuple(body.seed_item_ids),
            negative_item_ids=tuple(body.negative_item_ids),
            exclude_item_ids=tuple(body.exclude_item_ids),
            k=body.k,
            filter=flt,
        )
    )
    engine = request.app.state.engine
    items = {d.item.id: d.item for d in engine.get(settings.index_alias, [r.item_id for r in result.items])}
    out: list[RecommendedItem] = []
    for rank, rec in enumerate(result.items, start=1):
        sources: dict[str, Any] = {name: {"score": hit.score, "rank": hit.rank} for name, hit in rec.sources.items()}
        out.append(
            RecommendedItem(id=rec.item_id, score=rec.score, rank=rank, sources=sources, item=items.get(rec.item_id))
        )
    return RecommendationOut(
        query_id=uuid.uuid4(),
        mode=result.mode.value,
        ranker=result.ranker,
        candidates=result.candidates,
        items=out,
        unknown_item_ids=list(result.unknown_item_ids),
    )
