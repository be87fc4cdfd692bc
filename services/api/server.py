"""How the API is served: uvicorn, with each answer's head and body written to the socket together.

Why: uvicorn writes an answer's status line and headers as soon as the app sends them, then its body in a
second write. The client wakes on the first segment, finds no body yet and sleeps again. On the 2-core
machine, an app that works 2 ms per request and answers 1.5 KB measured p99 3.41 ms with the two writes and
2.97 ms with one (24,000 requests each, alternating processes; p50 the same), and a plain asyncio server the
same gap (3.22 against 2.62 ms). A keystroke's answer is such a request: a few ms of the engine's work, then
a small JSON body.

How: the protocol's transport holds a write back until the next one or the end of the event loop's current
step, whichever comes first. A head followed by its body in the same step (every plain answer: Starlette
sends both without waiting) goes out as one write; a head whose body comes later (a stream) goes out on its
own one step later, as before in effect. Order is kept: held bytes always go out before any later ones.

On the embedded engine the protocol also answers keystrokes itself (`KeystrokeHttpProtocol`, below).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.api.keystroke import PATH, keystroke_answer, keystroke_path_on
from services.api.schemas.common import JSON_MEDIA_TYPE
from services.api.settings import ApiSettings


class OneWriteTransport:
    """A transport that joins a write with the one right after it; any other call goes to the real transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        joined, self._held = self._held + bytes(data), None
        self._transport.write(joined)

    def write_whole(self, data: bytes) -> None:
        """A whole answer in one piece: out now (after anything held), not at the end of the step."""
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # pause_reading, is_closing, get_extra_info, abort, ...
        return getattr(self._transport, name)


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `OneWriteTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held = OneWriteTransport(transport, asyncio.get_running_loop())
        super().connection_made(held)  # type: ignore[arg-type]


_KEYSTROKE_PATH = PATH.encode()
_KEYSTROKE_HEADERS = b"content-type: " + JSON_MEDIA_TYPE.encode() + b"\r\ncontent-length: "


class KeystrokeHttpProtocol(OneWriteHttpProtocol):
    """`OneWriteHttpProtocol` that answers a keystroke (`GET /v1/suggest`) as soon as its head is parsed, when
    the app's keystroke path can (keystroke.py), with the same answer and headers as the ASGI path.

    Why: between the request's bytes and the suggester, uvicorn builds a scope and a request cycle, starts a
    task, waits a turn of the event loop, and passes three ASGI layers; after it, two `send` calls build the
    head. Timed in the API at 100k items: 0.18 ms at p50 and 0.39 at p99 before the suggester, 0.11 and 0.45
    after it, of a keystroke whose prefix query takes 1.7 ms at p50.

    It answers only when uvicorn would start the request at once (no earlier request of the connection still
    in flight), with no access log or concurrency limit to keep and no root path; anything else, and any
    request the keystroke path declines (bad input, a stale alias check, an error), goes the usual way.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._answered = False
        # The application uvicorn was given (FastAPI's state holds the live search services); none when the
        # server would log each request or limit concurrency, which only the usual path does.
        takes = not self.access_log and self.limit_concurrency is None and not self.root_path
        self._app_state = getattr(self.config.app, "state", None) if takes else None

    def on_message_begin(self) -> None:
        self._answered = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if not self._answer_keystroke():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()

    def _answer_keystroke(self) -> bool:
        if self._app_state is None or self.parser.get_method() != b"GET" or self.pipeline:
            return False
        if self.cycle is not None and not self.cycle.response_complete:  # answers go out in request order
            return False
        url = httptools.parse_url(self.url)
        if url.path != _KEYSTROKE_PATH or self.parser.should_upgrade():
            return False
        body = keystroke_answer(self._app_state, url.query or b"")
        if body is None:
            return False
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        head = [b"HTTP/1.1 200 OK\r\n"]
        head += [b"%s: %s\r\n" % (name, value) for name, value in self.server_state.default_headers]
        head.append(_KEYSTROKE_HEADERS + b"%d\r\n" % len(body))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        cast(OneWriteTransport, self.transport).write_whole(b"".join(head) + body)
        self._answered = True
        # What uvicorn does when an answer is complete: count it, then close or wait for the next request.
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        else:
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        return True


def http_protocol(settings: ApiSettings) -> type[asyncio.Protocol] | str:
    """The protocol uvicorn serves the API with: one write per answer, unless the settings turn it off, and
    keystrokes answered in the protocol where the app has its keystroke path (the embedded engine)."""
    if not settings.one_write_answers:
        return "auto"
    if keystroke_path_on(settings):
        return KeystrokeHttpProtocol
    return OneWriteHttpProtocol


def uvicorn_config(app: Any, settings: ApiSettings, **options: Any) -> uvicorn.Config:
    """The API's uvicorn configuration, for `trawl serve` and the demo alike."""
    options.setdefault("log_level", "info")
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        http=http_protocol(settings),
        **options,
    )
