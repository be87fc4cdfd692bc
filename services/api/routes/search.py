"""GET|POST /v1/search: hybrid search with filters, facets, paging and explain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.api.deps import SearchPipelineDep, SettingsDep
from services.api.schemas.common import ERROR_RESPONSES, filter_from_json, filter_from_json_text
from services.api.schemas.search import SearchOptions, SearchParams, SearchRequest, SearchResponse
from services.api.settings import ApiSettings
from services.core.filters import Filter
from services.search.pipeline import SearchPipeline, legs_for
from services.search.types import SearchQuery

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


def _search(
    pipeline: SearchPipeline, settings: ApiSettings, options: SearchOptions, flt: Filter | None
) -> SearchResponse:
    # The depth is the deployment's, not the request's: total and facets do not change with page or size.
    query = SearchQuery(options.q, flt, depth=settings.search.candidate_depth, legs=legs_for(options.mode))
    result = pipeline.run(query, page=options.page, size=options.size, facets=options.facets)
    return SearchResponse.from_result(result, mode=options.mode, explain=options.explain)


@router.get("/search", summary="Search (query string)")
def search_get(
    params: Annotated[SearchParams, Query()], pipeline: SearchPipelineDep, settings: SettingsDep
) -> SearchResponse:
    """Keyword and vector retrieval side by side, fused, scored and re-ranked; one page of the result."""
    return _search(pipeline, settings, params, filter_from_json_text(params.filter, settings.catalog))


@router.post("/search", summary="Search (JSON body)")
def search_post(body: SearchRequest, pipeline: SearchPipelineDep, settings: SettingsDep) -> SearchResponse:
    """The same search with the options as a JSON body and the filter as a JSON object."""
    return _search(pipeline, settings, body, filter_from_json(body.filter, settings.catalog))
