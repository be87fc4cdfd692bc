"""The API's HTTP protocol writes an answer's head and body to the socket together (services/api/server.py).

First the transport on its own, over a recording transport; then a real uvicorn server on a loopback port,
with the real transport under a recorder, answering plain, streamed and failing requests over one kept
connection, read by a real HTTP client.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.api.server import KeystrokeHttpProtocol, OneWriteHttpProtocol, OneWriteTransport, uvicorn_config
from services.api.settings import ApiSettings


class RecordingTransport:
    """Records what is written to it; closing it is recorded too."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_a_write_and_the_next_one_in_the_same_step_go_out_as_one() -> None:
    async def main() -> list[bytes]:
        real = RecordingTransport()
        held = OneWriteTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert real.writes == []  # held back: its body may follow in the same step
        held.write(memoryview(b"{}"))
        await asyncio.sleep(0)  # the flush scheduled by the first write finds nothing held
        return real.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_a_lone_write_goes_out_at_the_end_of_the_step_and_order_is_kept() -> None:
    async def main() -> list[bytes]:
        real = RecordingTransport()
        held = OneWriteTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"head")
        await asyncio.sleep(0)
        assert real.writes == [b"head"]
        held.write(b"chunk-1")
        held.write(b"chunk-2")
        held.write(b"chunk-3")
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(main()) == [b"head", b"chunk-1chunk-2", b"chunk-3"]


def test_a_whole_answer_goes_out_at_once_after_anything_held() -> None:
    async def main() -> list[bytes]:
        real = RecordingTransport()
        held = OneWriteTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write_whole(b"answer-1")
        assert real.writes == [b"answer-1"]  # not held to the end of the step
        held.write(b"head")
        held.write_whole(b"answer-2")
        assert real.writes == [b"answer-1", b"headanswer-2"]  # what was held first, in the same write
        await asyncio.sleep(0)  # nothing left for the flush
        return real.writes

    assert asyncio.run(main()) == [b"answer-1", b"headanswer-2"]


def test_close_writes_what_is_held_first_and_a_closing_transport_gets_nothing() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        real = RecordingTransport()
        held = OneWriteTransport(real, loop)  # type: ignore[arg-type]
        held.write(b"last answer")
        held.close()
        assert real.closed
        gone = RecordingTransport()
        late = OneWriteTransport(gone, loop)  # type: ignore[arg-type]
        late.write(b"for a client that left")
        gone.closed = True  # the connection was lost before the step ended
        await asyncio.sleep(0)
        return real.writes, gone.writes

    closed_writes, lost_writes = asyncio.run(main())
    assert closed_writes == [b"last answer"]
    assert lost_writes == []


def test_trawl_serve_and_the_demo_use_the_one_write_protocol_unless_turned_off() -> None:
    config = uvicorn_config(Starlette(), ApiSettings(port=8123, engine="embedded"))
    config.load()
    assert config.http_protocol_class is KeystrokeHttpProtocol  # one write, and keystrokes in the protocol
    assert issubclass(KeystrokeHttpProtocol, OneWriteHttpProtocol)
    assert (config.host, config.port, config.access_log) == ("127.0.0.1", 8123, False)
    for settings in (ApiSettings(engine="opensearch"), ApiSettings(engine="embedded", suggest_fast_path=False)):
        other = uvicorn_config(Starlette(), settings)
        other.load()
        assert other.http_protocol_class is OneWriteHttpProtocol
    plain = uvicorn_config(Starlette(), ApiSettings(one_write_answers=False))
    plain.load()
    assert not issubclass(plain.http_protocol_class, OneWriteHttpProtocol)


# ---- a real server ---------------------------------------------------------------------------------------

WRITES: list[bytes] = []


class RecordedOneWriteProtocol(OneWriteHttpProtocol):
    """The API's protocol, with the socket's own transport under a recorder of the writes that reach it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        real_write = transport.write

        class Recorder:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                WRITES.append(bytes(data))
                real_write(data)

        super().connection_made(Recorder())  # type: ignore[arg-type]


async def plain(request: Request) -> Response:
    return JSONResponse({"q": request.query_params.get("q", ""), "pad": "x" * 1500})


async def streamed(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            await asyncio.sleep(0.01)
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


async def fails(request: Request) -> Response:
    raise RuntimeError("a handler's bug")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    app = Starlette(routes=[Route("/plain", plain), Route("/streamed", streamed), Route("/fails", fails)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="critical", http=RecordedOneWriteProtocol, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield sock.getsockname()
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_a_real_server_answers_each_plain_request_in_one_write_on_a_kept_connection(server: tuple[str, int]) -> None:
    WRITES.clear()
    conn = http.client.HTTPConnection(*server, timeout=10)
    for q in ("first", "second", "third"):
        conn.request("GET", f"/plain?q={q}")
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 200
        assert body.startswith(f'{{"q":"{q}"'.encode())
        assert int(answer.headers["content-length"]) == len(body) > 1500
    conn.close()
    assert len(WRITES) == 3  # uvicorn's own protocol writes each head and each body apart: 6
    for q, write in zip(("first", "second", "third"), WRITES, strict=True):
        assert write.startswith(b"HTTP/1.1 200 OK\r\n")
        assert write.endswith(b'"}') and f'"q":"{q}"'.encode() in write


def test_a_real_server_streams_and_fails_as_before(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=10)
    conn.request("GET", "/streamed")
    answer = conn.getresponse()
    assert answer.status == 200
    assert answer.headers["transfer-encoding"] == "chunked"
    assert answer.read() == b"one,two,three"
    conn.request("GET", "/fails")
    failed = conn.getresponse()
    assert failed.status == 500
    assert failed.read() == b"Internal Server Error"
    conn.close()
