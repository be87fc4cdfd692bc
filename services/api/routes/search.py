"""GET|POST /v1/search: hybrid search with filters, facets, paging and explain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from services.api.deps import SearchPipelineDep, SettingsDep
from services.api.schemas.common import ERROR_RESPONSES, JSON_MEDIA_TYPE, filter_from_json, filter_from_json_text
from services.api.schemas.search import SearchOptions, SearchParams, SearchRequest, SearchResponse
from services.api.settings import ApiSettings
from services.core.filters import Filter
from services.search.pipeline import SearchPipeline, legs_for
from services.search.types import SearchQuery

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


def _search(pipeline: SearchPipeline, settings: ApiSettings, options: SearchOptions, flt: Filter | None) -> bytes:
    # The depth is the deployment's, not the request's: total and facets do not change with page or size.
    query = SearchQuery(options.q, flt, depth=settings.search.candidate_depth, legs=legs_for(options.mode))
    result = pipeline.run(query, page=options.page, size=options.size, facets=options.facets)
    # Serialised by pydantic-core straight to JSON, as suggest and similar are: FastAPI's own path re-validates
    # the answer against the response model, dumps it to dicts, then runs json.dumps (1-2 ms for ten items).
    return SearchResponse.from_result(result, mode=options.mode, explain=options.explain).model_dump_json().encode()


@router.get("/search", summary="Search (query string)", response_model=SearchResponse)
async def search_get(
    params: Annotated[SearchParams, Query()], pipeline: SearchPipelineDep, settings: SettingsDep
) -> Response:
    """Keyword and vector retrieval side by side, fused, scored and re-ranked; one page of the result."""
    flt = filter_from_json_text(params.filter, settings.catalog)
    body = await run_in_threadpool(_search, pipeline, settings, params, flt)  # a search is work: off the loop
    return Response(body, media_type=JSON_MEDIA_TYPE)


@router.post("/search", summary="Search (JSON body)", response_model=SearchResponse)
async def search_post(body: SearchRequest, pipeline: SearchPipelineDep, settings: SettingsDep) -> Response:
    """The same search with the options as a JSON body and the filter as a JSON object."""
    flt = filter_from_json(body.filter, settings.catalog)
    answer = await run_in_threadpool(_search, pipeline, settings, body, flt)
    return Response(answer, media_type=JSON_MEDIA_TYPE)
