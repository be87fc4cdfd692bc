"""GET /v1/suggest: search-as-you-type."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.api.deps import SettingsDep, SuggesterDep, run_read
from services.api.schemas.common import ERROR_RESPONSES, filter_from_json_text
from services.api.schemas.suggest import SuggestParams, SuggestResponse

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


@router.get("/suggest", summary="Suggest items and completions for a partial query", response_model=SuggestResponse)
async def suggest(
    request: Request, params: Annotated[SuggestParams, Query()], suggester: SuggesterDep, settings: SettingsDep
) -> Response:
    """Prefix on the last word, typo tolerance on the others, popularity as a prior; unavailable and deleted
    items never appear. A trailing space marks the last word as complete."""
    flt = filter_from_json_text(params.filter, settings.catalog)
    result = await run_read(
        request, lambda: suggester.run(params.q, size=params.size, completions=params.completions, filter=flt)
    )
    # Serialised by pydantic-core straight to JSON: FastAPI's own path (re-validate against the response model,
    # dump to dicts, then json.dumps) is about a millisecond per keystroke, as much as the engine's prefix query.
    return Response(SuggestResponse.from_result(result).model_dump_json(), media_type="application/json")
