"""Dependencies, declared once as `Annotated` aliases; everything here was built at startup (see app.py).

The ones that only read `app.state` are `async`: FastAPI runs a sync dependency on the thread pool, and a hop
there and back costs about as much as a keystroke's prefix query on a busy 2-core machine.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, TypeVar, cast

from fastapi import Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from services.api.settings import ApiSettings
from services.core.embedding import Embedder
from services.core.engines.base import SearchEngine
from services.ranking.service import RankingService
from services.rules.service import RuleService
from services.search.live import LiveSearch
from services.search.pipeline import SearchPipeline
from services.search.service import SearchServices
from services.search.similar import SimilarItems
from services.search.suggest import Suggester

T = TypeVar("T")


async def get_settings(request: Request) -> ApiSettings:
    return cast(ApiSettings, request.app.state.settings)


async def get_engine(request: Request) -> SearchEngine:
    return cast(SearchEngine, request.app.state.engine)


async def get_embedder(request: Request) -> Embedder | None:
    """The query embedder (with its LRU cache of query vectors); None when the model was not loaded."""
    return cast(Embedder | None, request.app.state.embedder)


async def get_search(request: Request) -> SearchServices:
    # The services pinned to the live version and its model; they change when the alias moves. Once a second
    # it asks the engine where the alias points (an HTTP call on OpenSearch): that goes to the thread pool.
    live = cast(LiveSearch, request.app.state.live_search)
    held = live.fresh()
    return held if held is not None else await run_in_threadpool(live.current)


async def run_read(request: Request, work: Callable[[], T]) -> T:
    """Run a short read (suggest, similar) for a handler. On the in-process engine it runs right here on the
    event loop: the hop to the thread pool and back cost as much as the read (a millisecond or two), and the
    work holds the GIL either way. Reads that wait on a network (OpenSearch) go to the thread pool."""
    if cast(ApiSettings, request.app.state.settings).engine == "embedded":
        return work()
    return await run_in_threadpool(work)


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
EngineDep = Annotated[SearchEngine, Depends(get_engine)]
EmbedderDep = Annotated[Embedder | None, Depends(get_embedder)]
SearchServicesDep = Annotated[SearchServices, Depends(get_search)]


async def get_pipeline(search: SearchServicesDep) -> SearchPipeline:
    return search.pipeline


async def get_suggester(search: SearchServicesDep) -> Suggester:
    return search.suggester


async def get_similar(search: SearchServicesDep) -> SimilarItems:
    return search.similar


SearchPipelineDep = Annotated[SearchPipeline, Depends(get_pipeline)]
SuggesterDep = Annotated[Suggester, Depends(get_suggester)]
SimilarItemsDep = Annotated[SimilarItems, Depends(get_similar)]


async def get_ranking(request: Request) -> RankingService:
    return cast(RankingService, request.app.state.ranking)


async def get_rules(request: Request) -> RuleService:
    return cast(RuleService, request.app.state.rules)


RankingDep = Annotated[RankingService, Depends(get_ranking)]
RulesDep = Annotated[RuleService, Depends(get_rules)]


def require_admin(request: Request, x_admin_key: Annotated[str | None, Header()] = None) -> None:
    """Admin scope: the `X-Admin-Key` header must equal the configured key. With no key configured, admin
    endpoints answer only on a loopback address (the zero-setup default on one machine)."""
    settings = cast(ApiSettings, request.app.state.settings)
    expected = settings.admin_key.get_secret_value() if settings.admin_key else None
    if expected is None:
        client = request.client.host if request.client else ""
        if client in ("127.0.0.1", "::1", "testclient"):
            return
        raise HTTPException(403, "admin endpoints need TRAWL_ADMIN_KEY to be set on this server")
    # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    if x_admin_key is None or not secrets.compare_digest(x_admin_key.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-Admin-Key header")


AdminDep = Depends(require_admin)
