"""Admin: the served ranking model. What is served (or why the fused order is), the scoring metrics, the
registry's models; and a reload that swaps the model without a restart or a failed request. A model that
cannot be served (missing, broken, or trained on another feature list) is refused with the reason, and the
model served before keeps serving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import AdminDep, RankingDep
from services.api.schemas.common import ErrorDetail, ErrorResponse
from services.ranking.model import ModelCard, ModelError, ModelRefused

router = APIRouter(prefix="/admin/model", tags=["admin"], dependencies=[AdminDep])


class ModelState(BaseModel):
    served: ModelCard | None = Field(description="The model scoring searches; null: the fused order is served.")
    fallback_reason: str | None = Field(description="Why no model is served (when none is).")
    runtime: str | None = Field(
        None, description="What scores with the served model: 'compiled' (native code) or 'lightgbm'."
    )
    since: datetime
    feature_set: str
    features: list[str]
    registry_current: str | None
    registry_models: list[str]
    metrics: dict[str, Any]


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    model: str = Field(
        "current",
        description="A model id in the registry, `current` (the registry's CURRENT, else the shipped default), "
        "`default` (the shipped model) or `none` (serve the fused order).",
    )


class ReloadOut(BaseModel):
    served: ModelCard | None
    previous: ModelCard | None
    fallback_reason: str | None


REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The model cannot be served; the previous one still is."}
}


@router.get("", summary="The served model, the registry and the scoring metrics")
def model_state(ranking: RankingDep) -> ModelState:
    state = ranking.state()
    fs = ranking.scorer.extractor.feature_set
    return ModelState(
        served=state.model.card if state.model else None,
        fallback_reason=None if state.model else state.why_none,
        runtime=state.model.runtime if state.model else None,
        since=state.since,
        feature_set=fs.id,
        features=list(fs.names),
        registry_current=ranking.registry.current_id(),
        registry_models=[c.model_id for c in ranking.registry.cards()],
        metrics=ranking.metrics.snapshot(),
    )


@router.post("/reload", summary="Load and serve a model without a restart", response_model=ReloadOut, responses=REFUSED)
def reload_model(request: Request, ranking: RankingDep, body: ReloadIn | None = None) -> ReloadOut | JSONResponse:
    """Served here at once, and recorded in the registry so that every other API process follows within
    `ranking.follow_every_s`."""
    name = (body or ReloadIn()).model
    try:
        result = ranking.reload(name)
    except ModelError as exc:
        kind = "model_refused" if isinstance(exc, ModelRefused) else "model_unavailable"
        error = ErrorResponse(detail=[ErrorDetail(field="model", message=str(exc), type=kind)])
        return JSONResponse(error.model_dump(mode="json"), status_code=status.HTTP_409_CONFLICT)
    request.app.state.model_follower.acknowledge(ranking.registry.record_served(name))
    return ReloadOut(served=result.served, previous=result.previous, fallback_reason=result.why_none)
