"""Dependencies, declared once as `Annotated` aliases; everything here was built at startup (see app.py)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.api.settings import ApiSettings
from services.core.embedding import Embedder
from services.core.engines.base import SearchEngine
from services.search.pipeline import SearchPipeline
from services.search.service import SearchServices
from services.search.similar import SimilarItems
from services.search.suggest import Suggester


def get_settings(request: Request) -> ApiSettings:
    return cast(ApiSettings, request.app.state.settings)


def get_engine(request: Request) -> SearchEngine:
    return cast(SearchEngine, request.app.state.engine)


def get_embedder(request: Request) -> Embedder | None:
    """The query embedder (with its LRU cache of query vectors); None when the model was not loaded."""
    return cast(Embedder | None, request.app.state.embedder)


def get_search(request: Request) -> SearchServices:
    return cast(SearchServices, request.app.state.search)


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
EngineDep = Annotated[SearchEngine, Depends(get_engine)]
EmbedderDep = Annotated[Embedder | None, Depends(get_embedder)]
SearchServicesDep = Annotated[SearchServices, Depends(get_search)]


def get_pipeline(search: SearchServicesDep) -> SearchPipeline:
    return search.pipeline


def get_suggester(search: SearchServicesDep) -> Suggester:
    return search.suggester


def get_similar(search: SearchServicesDep) -> SimilarItems:
    return search.similar


SearchPipelineDep = Annotated[SearchPipeline, Depends(get_pipeline)]
SuggesterDep = Annotated[Suggester, Depends(get_suggester)]
SimilarItemsDep = Annotated[SimilarItems, Depends(get_similar)]
