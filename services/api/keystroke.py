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
"""

from __future__ import annotations

from typing import cast
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
            body = self._answer(scope)
            if body is not None:
                headers = [(b"content-length", str(len(body)).encode()), _CONTENT_TYPE]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _answer(scope: Scope) -> bytes | None:
        state = scope["app"].state  # Starlette puts the application in the scope before its middleware
        services = cast(LiveSearch, state.live_search).fresh()
        if services is None:
            return None
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        given = dict(pairs)
        if len(given) != len(pairs):  # a repeated parameter: FastAPI's reading of it is the one that counts
            return None
        settings = cast(ApiSettings, state.settings)
        try:
            return answer(services.suggester, SuggestParams.model_validate(given), settings.catalog)
        except Exception:  # bad input or an error: the route answers it anew, with the app's error handlers
            return None
