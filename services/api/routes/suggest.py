"""GET /v1/suggest: search-as-you-type.

Most keystrokes never reach this handler: `services/api/keystroke.py` answers a well-formed request in front
of FastAPI, with `answer` below. This route documents the endpoint (OpenAPI) and answers everything the
fast path hands on (bad input, the once-a-second check of the live version, errors), so both give the same
answers and the same errors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.api.deps import SettingsDep, SuggesterDep, run_read
from services.api.schemas.common import ERROR_RESPONSES, JSON_MEDIA_TYPE, filter_from_json_text
from services.api.schemas.suggest import SuggestParams, SuggestResponse
from services.core.domain import CatalogSchema
from services.search.suggest import Suggester

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


def answer(suggester: Suggester, params: SuggestParams, catalog: CatalogSchema) -> bytes:
    """The JSON answer to one keystroke, written by pydantic-core (`SuggestResponse.json_of`): FastAPI's own
    path (re-validate against the response model, dump to dicts, then json.dumps) cost about a millisecond."""
    flt = filter_from_json_text(params.filter, catalog)
    result = suggester.run(params.q, size=params.size, completions=params.completions, filter=flt)
    return SuggestResponse.json_of(result)


@router.get("/suggest", summary="Suggest items and completions for a partial query", response_model=SuggestResponse)
async def suggest(
    request: Request, params: Annotated[SuggestParams, Query()], suggester: SuggesterDep, settings: SettingsDep
) -> Response:
    """Prefix on the last word, typo tolerance on the others, popularity as a prior; unavailable and deleted
    items never appear. A trailing space marks the last word as complete."""
    body = await run_read(request, lambda: answer(suggester, params, settings.catalog))
    return Response(body, media_type=JSON_MEDIA_TYPE)
