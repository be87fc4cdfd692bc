"""The FastAPI application factory. Heavy objects (engine client, model) are built at startup, not at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.api.settings import ApiSettings
from services.core.engines import build_engine


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = build_engine(settings)
        try:
            yield
        finally:
            app.state.engine.close()

    app = FastAPI(title="trawl", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> Any:
        """Readiness: the engine answers and the alias points at a version."""
        try:
            live = app.state.engine.live_version(settings.index_alias)
        except Exception as exc:  # noqa: BLE001 - any engine failure means not ready
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return {"status": "ok", "engine": settings.engine, "alias": settings.index_alias,
                "version": live.version if live else None, "count": live.count if live else 0}

    return app
