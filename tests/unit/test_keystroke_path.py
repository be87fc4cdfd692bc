"""The keystroke path in front of FastAPI: which requests it answers itself and which it hands on untouched.

The suggester here is a fake that records its calls (the answers' content is the real suggester's business,
tested end to end, where the same requests also go through the FastAPI route; see test_search_api.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.api.keystroke import KeystrokePath
from services.api.server import KeystrokeHttpProtocol
from services.api.settings import ApiSettings
from services.core.domain import Item
from services.core.errors import ValidationError
from services.core.filters import Term
from services.search.suggest import Completion, SuggestedItem, SuggestResult
from services.search.types import LegReport


class RecordingSuggester:
    """A fake suggester: records each call, answers one item, or raises what it was given."""

    def __init__(self, raises: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.raises = raises

    def run(self, text: str, **kwargs: Any) -> SuggestResult:
        self.calls.append({"text": text, **kwargs})
        if self.raises is not None:
            raise self.raises
        item = Item.parse({"id": "film-1", "title": "Heat", "popularity": 3.0})
        return SuggestResult(
            text,
            [Completion("heat", 1.0)],
            [SuggestedItem(item.id, item, 1.0, ("prefix",))],
            (LegReport("prefix", 1, 0.4),),
            "0b6e9d5e-3c1f-4a43-9d43-7d1c2f1f0a11",
        )


class FakeLive:
    def __init__(self, suggester: RecordingSuggester, fresh: bool = True) -> None:
        self._services = SimpleNamespace(suggester=suggester)
        self._fresh = fresh

    def fresh(self) -> Any:
        return self._services if self._fresh else None


def call(
    path: str,
    query: str = "",
    *,
    method: str = "GET",
    suggester: RecordingSuggester | None = None,
    fresh: bool = True,
    scope_type: str = "http",
    settings: ApiSettings | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One request through the middleware: (messages it sent itself, scopes it handed on)."""
    handed_on: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope)

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    state = SimpleNamespace(
        settings=settings or ApiSettings(engine="embedded"),
        live_search=FakeLive(suggester or RecordingSuggester(), fresh),
    )
    scope = {
        "type": scope_type,
        "method": method,
        "path": path,
        "query_string": query.encode("latin-1"),
        "app": SimpleNamespace(state=state),
    }
    anyio.run(KeystrokePath(inner), scope, receive, send)
    return sent, handed_on


def test_a_well_formed_keystroke_is_answered_in_front_of_fastapi() -> None:
    suggester = RecordingSuggester()
    sent, handed_on = call("/v1/suggest", "q=" + quote("hea t") + "&size=3&completions=0", suggester=suggester)
    assert not handed_on
    start, body = sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    answer = json.loads(body["body"])
    assert answer["q"] == "hea t" and [i["id"] for i in answer["items"]] == ["film-1"]
    assert answer["completions"] == [{"text": "heat", "score": 1.0}]
    assert suggester.calls == [{"text": "hea t", "size": 3, "completions": 0, "filter": None}]


def test_its_filter_reaches_the_suggester_typed() -> None:
    suggester = RecordingSuggester()
    flt = json.dumps({"term": {"categories": "Drama"}})
    _, handed_on = call("/v1/suggest", "q=he&filter=" + quote(flt), suggester=suggester)
    assert not handed_on
    assert suggester.calls[0]["filter"] == Term("categories", "Drama")


@pytest.mark.parametrize(
    ("path", "query", "method"),
    [
        ("/v1/suggest", "q=he", "POST"),
        ("/v1/search", "q=he", "GET"),
        ("/v1/suggest/", "q=he", "GET"),
        ("/v1/suggest", "", "GET"),  # no q
        ("/v1/suggest", "q=", "GET"),
        ("/v1/suggest", "q=he&size=51", "GET"),
        ("/v1/suggest", "q=he&size=lots", "GET"),
        ("/v1/suggest", "q=he&sise=5", "GET"),  # an unknown parameter
        ("/v1/suggest", "q=he&q=ha", "GET"),  # a repeated one
        ("/v1/suggest", "q=he&filter=%7Bnot%20json", "GET"),
        ("/v1/suggest", "q=he&filter=" + quote(json.dumps({"term": {"colour": "red"}})), "GET"),
        ("/v1/suggest", "q=" + "x" * (10 * 1024 + 1), "GET"),
    ],
)
def test_anything_else_goes_on_to_fastapi_untouched(path: str, query: str, method: str) -> None:
    suggester = RecordingSuggester()
    sent, handed_on = call(path, query, method=method, suggester=suggester)
    assert not sent and len(handed_on) == 1
    assert handed_on[0]["path"] == path and handed_on[0]["query_string"] == query.encode("latin-1")
    assert not suggester.calls  # bad input never reached the suggester


def test_the_live_version_check_and_other_scopes_go_on_to_fastapi() -> None:
    sent, handed_on = call("/v1/suggest", "q=he", fresh=False)
    assert not sent and len(handed_on) == 1
    sent, handed_on = call("/v1/suggest", "q=he", scope_type="websocket")
    assert not sent and len(handed_on) == 1
    for settings in (ApiSettings(engine="opensearch"), ApiSettings(engine="embedded", suggest_fast_path=False)):
        sent, handed_on = call("/v1/suggest", "q=he", settings=settings)
        assert not sent and len(handed_on) == 1


@pytest.mark.parametrize("error", [ValidationError("q", "must not be empty"), RuntimeError("engine broke")])
def test_an_error_in_the_suggester_is_answered_by_the_route(error: Exception) -> None:
    suggester = RecordingSuggester(raises=error)
    sent, handed_on = call("/v1/suggest", "q=he", suggester=suggester)
    assert suggester.calls and not sent and len(handed_on) == 1


# ---- in the API's HTTP protocol (services/api/server.py), on a real uvicorn server -------------------------


class ServedApp:
    """A Starlette app with the keystroke path (its state and middleware), its own /v1/suggest route (so an
    answer says which path made it), and in front a recorder of every request the ASGI app saw; served by
    uvicorn on loopback with the API's protocol."""

    def __init__(self, **config: Any) -> None:
        self.suggester = RecordingSuggester()
        self.asgi_saw: list[str] = []

        async def route(request: Request) -> Response:
            return JSONResponse({"answered_by": "route"}, status_code=422)

        async def other(request: Request) -> Response:
            return JSONResponse({"answered_by": "other"})

        routes = [Route("/v1/suggest", route), Route("/other", other)]
        app = Starlette(routes=routes, middleware=[Middleware(KeystrokePath)])  # as the API's app has it
        app.state.settings = ApiSettings(engine="embedded")
        app.state.live_search = FakeLive(self.suggester)
        self.app = app

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.asgi_saw.append(f"{scope['path']}?{scope['query_string'].decode()}")
            await app(scope, receive, send)

        recorded.state = app.state  # type: ignore[attr-defined]  # what the protocol reads, as from FastAPI
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address = self._sock.getsockname()
        options = {"log_level": "critical", "lifespan": "off", "access_log": False, **config}
        self._server = uvicorn.Server(uvicorn.Config(recorded, http=KeystrokeHttpProtocol, **options))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def read_answers(sock: socket.socket, n: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """n answers (status line, headers, body) read off a socket, each by its content-length."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        size = int(headers[b"content-length"])
        while len(buf) < size:
            buf += sock.recv(65536)
        out.append((status, headers, buf[:size]))
        buf = buf[size:]
    return out


def test_the_protocol_answers_a_keystroke_without_the_asgi_app_as_the_keystroke_path_does() -> None:
    query = "q=" + quote("hea t") + "&size=3&completions=0"
    via_asgi, _ = call("/v1/suggest", query)
    with ServedApp() as served:
        conn = http.client.HTTPConnection(*served.address, timeout=10)
        for path in (f"/v1/suggest?{query}", "/other", "/v1/suggest?q=he", "/v1/suggest?q=he&size=0"):
            conn.request("GET", path)
            answer = conn.getresponse()
            body = answer.read()
            if path.endswith(query):  # the same answer, byte for byte, as the ASGI keystroke path's
                assert answer.status == 200 and body == via_asgi[1]["body"]
                assert answer.headers["content-type"] == "application/json"
                assert int(answer.headers["content-length"]) == len(body)
                assert answer.headers["server"] == "uvicorn" and answer.headers["date"]  # uvicorn's own headers
        conn.close()
    # the keystrokes never reached the ASGI app; another path and bad input (size=0) did, on the same connection
    assert served.asgi_saw == ["/other?", "/v1/suggest?q=he&size=0"]
    assert [c["text"] for c in served.suggester.calls] == ["hea t", "he"]


def test_pipelined_requests_are_answered_in_order_and_connection_close_is_kept() -> None:
    with ServedApp() as served, socket.create_connection(served.address, timeout=10) as sock:
        sock.sendall(
            b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/suggest?q=one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/suggest?q=two HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = read_answers(sock, 3)  # the keystrokes came while /other was in flight: uvicorn queued them
        assert json.loads(answers[0][2]) == {"answered_by": "other"}
        assert [json.loads(body)["q"] for _, _, body in answers[1:]] == ["one", "two"]
        assert served.asgi_saw == ["/other?", "/v1/suggest?q=one", "/v1/suggest?q=two"]
        sock.sendall(b"GET /v1/suggest?q=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ((status, headers, body),) = read_answers(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
        assert json.loads(body)["q"] == "last"
        assert sock.recv(1) == b""  # and the server closed it
    assert len(served.asgi_saw) == 3  # the last keystroke, alone on the connection, never reached the ASGI app


def test_with_an_access_log_every_request_goes_through_the_asgi_app() -> None:
    with ServedApp(access_log=True) as served:
        conn = http.client.HTTPConnection(*served.address, timeout=10)
        conn.request("GET", "/v1/suggest?q=he")
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["q"] == "he"  # by the ASGI keystroke path
        conn.close()
    assert served.asgi_saw == ["/v1/suggest?q=he"]
