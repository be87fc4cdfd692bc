"""GET /v1/items/{id}/similar: the nearest items to an item."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from services.api.deps import SettingsDep, SimilarItemsDep, run_read
from services.api.schemas.common import ERROR_RESPONSES, JSON_MEDIA_TYPE, ErrorResponse, filter_from_json_text
from services.api.schemas.items import SimilarParams, SimilarResponse

router = APIRouter(tags=["items"], responses=ERROR_RESPONSES)


@router.get(
    "/items/{item_id:path}/similar",
    summary="Items similar to an item",
    response_model=SimilarResponse,
    responses={404: {"model": ErrorResponse, "description": "No item has this id."}},
)
async def similar(
    request: Request,
    item_id: Annotated[str, Path(description="The item's id (may contain '/').")],
    params: Annotated[SimilarParams, Query()],
    similar: SimilarItemsDep,
    settings: SettingsDep,
) -> Response:
    """Nearest neighbours of the item's stored vector; the item itself is never among them."""
    flt = filter_from_json_text(params.filter, settings.catalog)
    found = await run_read(request, lambda: similar.run(item_id, size=params.size, filter=flt))
    # Serialised by pydantic-core straight to JSON, as suggest is: FastAPI's path re-validates every item.
    return Response(SimilarResponse.from_result(found).model_dump_json(), media_type=JSON_MEDIA_TYPE)
