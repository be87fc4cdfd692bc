"""The FastAPI application factory. Heavy objects (engine client, model) are built at startup, not import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from indexer.admin_store import admin_store_for
from indexer.celery_app import REINDEX, create_celery
from indexer.reindex import ReindexRunner
from indexer.runtime import IndexerRuntime, ledger_for
from indexer.s3_source import S3EventHandler, s3_client
from indexer.service import IngestService
from services.api.errors import install_error_handlers
from services.api.keystroke import KeystrokePath, keystroke_path_on
from services.api.routes import admin_dlq, admin_indices, admin_model, admin_rules, events, recommendations, v1, web
from services.api.settings import ApiSettings
from services.core.embedding import Embedder, EmbedderPool, build_embedder
from services.core.engines import build_engine
from services.core.engines.base import SearchEngine, Vector
from services.ranking.follow import ModelFollower
from services.ranking.service import build_ranking_service
from services.recs import RecommendationService, build_artefact_store, build_interaction_store
from services.rules.service import build_rules
from services.search.live import LiveSearch
from services.search.service import build_search_services

# The cyclic GC's thresholds in the API process (see the lifespan); the query benchmark's process uses them too.
# Measured and kept (docs/benchmarks.md, tenth round): young collections every 1,000 allocations instead (with
# full passes as seldom) took 0.45 ms off the suggester's p99 but doubled search's GC time (transient objects
# of a ranked search outlive ten times more collections) and cost its p99 12-19 ms.
GC_THRESHOLDS = (10_000, 20, 10)

DESCRIPTION = """
Hybrid search (BM25 and vector retrieval side by side, fused, scored, re-ranked), search-as-you-type and
similar items over one catalog. Every search answer carries a `query_id` to quote when reporting interactions.
Bad input is answered 422 with the offending field named; an unknown id 404.
"""


def create_app(settings: ApiSettings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """`embedder`: an already loaded model to use instead of loading one (tests and tools share one)."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A request allocates thousands of short-lived containers; at the default thresholds the cyclic GC's
        # full passes come every few dozen searches and walk every long-lived cache (30–60 ms each, the p99 at
        # 100k items). Ten times fewer passes; the embedded engine freezes its index state on load as well.
        # (The GIL's switch interval stays at Python's 5 ms: 0.5 ms gave suggest nothing measurable and cost
        # search its p99 in one of two runs; docs/benchmarks.md, fifth round.)
        gc.set_threshold(*GC_THRESHOLDS)
        app.state.settings = settings
        app.state.engine = build_engine(settings)
        app.state.ingest_ledger = ledger_for(settings)
        app.state.ingest = IngestService(app.state.ingest_ledger, create_celery(settings))
        app.state.s3_events = S3EventHandler(app.state.ingest, app.state.ingest_ledger, s3_client(settings.blobs))
        model = embedder
        if model is None and settings.load_model:
            model = await anyio.to_thread.run_sync(lambda: build_embedder(settings.embedding, for_queries=True))
        app.state.admin_store = admin_store_for(settings.data_dir)
        pool = None
        if model is not None:
            app.state.admin_store.remember_model(model.model_id, settings.embedding.model)
            pool = EmbedderPool(
                settings.embedding, app.state.admin_store.model_spec, preloaded=[model], for_queries=True
            )
        app.state.embedder = model
        # the scoring and re-ranking stages are the process's, shared by the services of every index version
        engine: SearchEngine = app.state.engine

        def candidate_vectors(ids: Sequence[str]) -> dict[str, Vector]:
            # from the version the request's candidates came from (no alias lookup on the request path)
            return engine.get_vectors(settings.index_alias, ids, version=app.state.live_search.version)

        app.state.ranking = await anyio.to_thread.run_sync(
            build_ranking_service, settings, settings.ranking, candidate_vectors
        )
        # the fleet's last admin reload (if any) wins over the configured model, then is followed from here on
        app.state.model_follower = ModelFollower(app.state.ranking, settings.ranking.follow_every_s)
        await anyio.to_thread.run_sync(app.state.model_follower.poll)
        app.state.model_follower.start()
        app.state.rules, rules_reranker = build_rules(settings, settings.rules, app.state.engine)
        scorer = app.state.ranking.scorer
        reranker = rules_reranker if settings.rules.enabled else None
        app.state.live_search = LiveSearch(
            app.state.engine,
            settings.index_alias,
            pool,
            lambda engine, emb: build_search_services(
                settings, settings.search, engine, emb, scorer=scorer, reranker=reranker, hidden=reranker
            ),
        )
        app.state.live_search.follow()  # where the alias points is checked in the background, not by requests
        # OpenSearch on the stack, SQLite on the embedded default; the worker's periodic refresh reads the same.
        app.state.interactions = await anyio.to_thread.run_sync(build_interaction_store, settings, settings.recs)
        # built off the event loop (it loads the live artefacts, perhaps from a bucket), then followed in the
        # background: no request waits for a check of the published version
        app.state.recommendations = await anyio.to_thread.run_sync(
            lambda: RecommendationService(
                store=app.state.interactions,
                artefacts=build_artefact_store(settings, settings.recs),
                settings=settings.recs,
                engine=app.state.engine,
                alias=settings.index_alias,
                hidden=reranker,  # hide rules hold for recommendations too
            )
        )
        app.state.recommendations.follow()
        runtime = IndexerRuntime(settings)
        runtime.engine = app.state.engine  # one client per process
        app.state.reindexer = ReindexRunner(runtime)
        celery = create_celery(settings)
        app.state.reindex_queue = lambda job_id: celery.send_task(REINDEX, args=[job_id], retry=False)
        try:
            yield
        finally:
            app.state.live_search.close()
            app.state.model_follower.close()
            app.state.recommendations.close()
            app.state.ranking.close()
            app.state.rules.close()
            app.state.admin_store.close()
            app.state.ingest_ledger.close()
            app.state.interactions.close()
            app.state.engine.close()

    app = FastAPI(title="trawl", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    if keystroke_path_on(settings):
        app.add_middleware(KeystrokePath)  # answers well-formed keystrokes in front of FastAPI (keystroke.py)
    app.include_router(v1)
    app.include_router(recommendations.router)  # before events: /v1/events/interactions is its path
    app.include_router(events.router)
    app.include_router(admin_indices.router)
    app.include_router(admin_dlq.router)
    app.include_router(admin_rules.router)  # /admin/rules (routes/admin_rules.py)
    app.include_router(admin_model.router)  # /admin/model, /admin/model/reload (routes/admin_model.py)
    app.include_router(web.router)  # the web page at / and /admin.html (routes/web.py)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> Any:
        """Readiness: the engine answers and the alias points at a version."""
        try:
            live = app.state.engine.live_version(settings.index_alias)
        except Exception as exc:  # any engine failure means not ready
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return {
            "status": "ok",
            "engine": settings.engine,
            "alias": settings.index_alias,
            "version": live.version if live else None,
            "count": live.count if live else 0,
        }

    return app
