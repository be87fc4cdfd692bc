"""One place that turns errors into HTTP answers. Bad input is a 422 naming the field, an unknown id a 404,
an engine that cannot answer a 503; all with the `ErrorResponse` body."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.api.schemas.common import ErrorDetail, ErrorResponse
from services.core.errors import (
    EngineError,
    FilterError,
    IndexNotFoundError,
    ItemValidationError,
    NotFoundError,
    TransientEngineError,
    UnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)
_SOURCES = {"body", "query", "path", "header", "cookie"}


def _answer(status: int, details: Sequence[ErrorDetail], headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(detail=list(details)).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        source, parts = parts[0], parts[1:]
        return ".".join(parts) or source
    return ".".join(parts) or "request"


def _request_error(error: dict[str, Any]) -> ErrorDetail:
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    kind = str(error.get("type", "invalid"))
    loc = list(error.get("loc", ()))
    if kind == "json_invalid":
        loc = loc[:1]  # the position is in the message, not a field
        reason = (error.get("ctx") or {}).get("error")
        message = f"the body is not valid JSON: {reason}" if reason else "the body is not valid JSON"
    return ErrorDetail(field=_field(loc), message=message, type=kind)


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_request_error(e) for e in exc.errors()]
    sent = request.headers.get("content-type", "")
    if "json" not in sent:
        # FastAPI reads a body as JSON only when it says so: "not a valid dictionary" would not tell why
        for d in details:
            if d.field == "body" and d.type in ("dict_type", "model_attributes_type"):
                d.message = f"send the body as JSON with content-type: application/json (it came as {sent or 'none'})"
    return _answer(422, details)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    kind = (
        "invalid_filter"
        if isinstance(exc, FilterError)
        else "invalid_item"
        if isinstance(exc, ItemValidationError)
        else "invalid_value"
    )
    return _answer(422, [ErrorDetail(field=exc.field, message=exc.message, type=kind)])


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFoundError)
    return _answer(404, [ErrorDetail(field="id", message=str(exc), type="not_found")])


async def _on_engine(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    if isinstance(exc, IndexNotFoundError):
        message = f"no live index to search: {exc}"
    else:
        log.exception("engine failed on %s %s", request.method, request.url.path)
        message = "the search engine is unavailable; try again shortly"
    headers = {"Retry-After": "1"} if isinstance(exc, TransientEngineError) else None
    return _answer(503, [ErrorDetail(field=None, message=message, type="unavailable")], headers)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _answer(503, [ErrorDetail(field=None, message=str(exc), type="unavailable")], {"Retry-After": "5"})


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "http_error"
    detail: Any = exc.detail
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        # Pydantic-style entries ({"loc", "msg", "type"}) raised by a handler: the same body as a 422.
        details = [_request_error(d) for d in detail]
    else:
        details = [ErrorDetail(field=None, message=str(detail), type=kind)]
    return _answer(exc.status_code, details, dict(exc.headers) if exc.headers else None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(NotFoundError, _on_not_found)
    app.add_exception_handler(EngineError, _on_engine)
    app.add_exception_handler(UnavailableError, _on_unavailable)
    app.add_exception_handler(HTTPException, _on_http)
