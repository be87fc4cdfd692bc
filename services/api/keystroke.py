"""The keystroke path: a well-formed `GET /v1/suggest` answered in front of FastAPI.

Why: search-as-you-type sends a request per keystroke, and each one should cost little more than the
engine's prefix query. FastAPI's own work per request (matching the route among ~40, solving the
dependencies, building a Request, the query-parameter model) measured 0.4–0.5 ms of a 2–3 ms keystroke
at the client on the 2-core machine, and 0.8 ms at p99. In front of the route, from the ASGI call to the
suggester is 0.17 ms, most of it FastAPI's own outer middleware, which every request passes.

What it takes: a GET of exactly /v1/suggest, each parameter given at most once, that `SuggestParams`
accepts, while the live search services were checked within the last second (`LiveSearch.fresh`), on the
embedded engine. It answers with the route's own `answer`. Anything else goes on to FastAPI untouched: bad
input, the once-a-second check of the alias, any error. The route then answers it as it always does (a 422
naming the field, a 503 from the engine), so the endpoint's answers and errors are one.

Not on OpenSearch: there a keystroke waits ~10 ms on the cluster, FastAPI's part is small, and handing a
failed request on would wait for a failing cluster twice.

Two doors to the same answer (`keystroke_answer`): the API's HTTP protocol (server.py) calls it as soon as
a keystroke's head is parsed, before uvicorn starts an ASGI task for it; this middleware serves the requests
that come by ASGI all the same (another server, a test client, a request uvicorn queued behind another).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.routes.suggest import answer
from services.api.schemas.common import JSON_MEDIA_TYPE
from services.api.schemas.suggest import SuggestParams
from services.api.settings import ApiSettings
from services.search.live import LiveSearch

PATH = "/v1/suggest"
_CONTENT_TYPE = (b"content-type", JSON_MEDIA_TYPE.encode())


class KeystrokePath:
    """ASGI middleware: answers the requests it can take, hands every other one to `app` as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            # Starlette puts the application in the scope before its middleware
            body = keystroke_answer(scope["app"].state, scope["query_string"])
            if body is not None:
                headers = [(b"content-length", str(len(body)).encode()), _CONTENT_TYPE]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def keystroke_answer(state: Any, query_string: bytes) -> bytes | None:
    """The JSON answer to `GET /v1/suggest?<query_string>` from the app's state, or None when the request is
    FastAPI's to answer (see the module's docstring). Also called by the API's HTTP protocol (server.py),
    which answers keystrokes before any ASGI machinery."""
    live = getattr(state, "live_search", None)  # None until the app's lifespan has built it
    services = cast(LiveSearch, live).fresh() if live is not None else None
    if services is None:
        return None
    settings = cast(ApiSettings, state.settings)
    if not keystroke_path_on(settings):  # checked before any parsing: a server with the path off pays nothing
        return None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    given = dict(pairs)
    if len(given) != len(pairs):  # a repeated parameter: FastAPI's reading of it is the one that counts
        return None
    try:
        return answer(services.suggester, SuggestParams.model_validate(given), settings.catalog)
    except Exception:  # bad input or an error: the route answers it anew, with the app's error handlers
        return None


def keystroke_path_on(settings: ApiSettings) -> bool:
    """Whether keystrokes are answered ahead of FastAPI: on the embedded engine, unless turned off."""
    return settings.suggest_fast_path and settings.engine == "embedded"
