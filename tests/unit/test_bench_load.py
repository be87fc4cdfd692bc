"""The benchmarks' load generator: its lean HTTP/1.1 client reads whole answers (by length, in chunks, with the
server closing), against a real HTTP server from the standard library, and the load process reports statuses."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from services.bench.common import http_load, run_concurrently
from services.bench.load import HttpError, KeepAliveClient

BODY = b'{"items": ["\xc3\xa9t\xc3\xa9"]}' * 500  # bigger than one read


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[int]] = []

    def setup(self) -> None:
        super().setup()
        Handler.connections.append(id(self.connection))

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (BODY[:1000], BODY[1000:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/stall":  # half an answer, then nothing for a while
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:100])
            self.wfile.flush()
            time.sleep(1)
            self.close_connection = True
            return
        status = 404 if self.path == "/missing" else 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(BODY)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        if self.path == "/idle-timeout":  # closed after the answer without saying so, as a keep-alive timeout does
            self.close_connection = True
        self.end_headers()
        self.wfile.write(BODY)

    def do_POST(self) -> None:
        received = self.rfile.read(int(self.headers["Content-Length"]))
        answer = b"%s %s %s" % (self.path.encode(), self.headers["Content-Type"].encode(), received)
        self.send_response(202)
        self.send_header("Content-Length", str(len(answer)))
        self.close_connection = self.path == "/post-then-idle"
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    Handler.connections.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_answers_are_read_whole_over_one_connection(server: tuple[str, int]) -> None:
    client = KeepAliveClient(*server)
    assert client.get("/a") == (200, BODY)
    assert client.get("/chunked") == (200, BODY)
    assert client.get("/missing") == (404, BODY)
    assert client.get("/b?q=%C3%A9") == (200, BODY)
    assert len(Handler.connections) == 1
    client.close()


@pytest.mark.parametrize(
    "first",
    [
        "/close",  # the server says it closes
        "/idle-timeout",  # it closes without saying so (a keep-alive timeout): the next request is sent again
    ],
)
def test_a_connection_the_server_closed_is_opened_again(server: tuple[str, int], first: str) -> None:
    client = KeepAliveClient(*server)
    assert client.get(first) == (200, BODY)
    assert client.get("/a") == (200, BODY)
    assert len(Handler.connections) == 2
    client.close()


def test_an_answer_that_is_not_http_is_an_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def garbage() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    client = KeepAliveClient("127.0.0.1", listener.getsockname()[1])
    with pytest.raises(HttpError, match="status line"):
        client.get("/")
    client.close()
    listener.close()


def test_the_load_process_reports_each_status_and_latency(server: tuple[str, int]) -> None:
    host, port = server
    timed = http_load(f"http://{host}:{port}", ["/a", "/missing", "/chunked", "/b"], concurrency=2)
    assert sorted(timed.statuses) == [200, 200, 200, 404]
    assert len(timed.latencies_ms) == 4 and all(ms > 0 for ms in timed.latencies_ms)
    assert timed.marked is None  # nothing asked of the bodies


def test_the_load_process_tells_which_answers_hold_a_marker(server: tuple[str, int]) -> None:
    host, port = server
    bodies = ['{"n":1}', '{"cached":true}', '{"cached":false}']
    timed = http_load(
        f"http://{host}:{port}", ["/e1", "/e2", "/e3"], concurrency=2, bodies=bodies, marker='"cached":true'
    )
    assert timed.marked == [False, True, False]  # in the order of the paths, whichever client sent each


def test_a_post_sends_its_body_and_is_never_sent_twice(server: tuple[str, int]) -> None:
    client = KeepAliveClient(*server)
    assert client.post("/events", b'{"a": 1}') == (202, b'/events application/json {"a": 1}')
    assert client.post("/post-then-idle", b"x" * 70_000)[1].endswith(b"x" * 10)  # bigger than one write
    # the server closed the kept connection: a GET would be sent again, a POST is not (it may not be idempotent)
    with pytest.raises((HttpError, ConnectionError)):
        client.post("/events", b"{}")
    assert client.post("/events", b"{}") == (202, b"/events application/json {}")  # on a new connection
    client.close()


def test_the_load_process_posts_one_body_per_path(server: tuple[str, int]) -> None:
    host, port = server
    timed = http_load(f"http://{host}:{port}", ["/e1", "/e2", "/e3"], concurrency=2, bodies=["{}", "[]", "{}"])
    assert timed.statuses == [202, 202, 202] and timed.errors == 0


def test_an_answer_cut_short_by_a_timeout_leaves_no_rest_for_the_next_request(server: tuple[str, int]) -> None:
    client = KeepAliveClient(*server, timeout=0.3)
    with pytest.raises(TimeoutError):
        client.get("/stall")
    assert client.get("/a") == (200, BODY)  # on a new connection, not the stalled answer's rest
    assert len(Handler.connections) == 2
    client.close()


def test_think_time_waits_between_requests_and_is_not_timed() -> None:
    """Each call is timed alone: the waits show in the wall time, never in a latency."""
    starts: list[float] = []

    def call(_: int) -> int:
        starts.append(time.perf_counter())
        return 200

    timed = run_concurrently(range(3), call, 1, pause_s=0.1)
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(starts))
    assert timed.wall_s >= 0.3 and sum(timed.latencies_ms) / 1000 <= timed.wall_s - 0.3


def test_the_load_process_waits_its_think_time_after_each_answer(server: tuple[str, int]) -> None:
    host, port = server
    timed = http_load(f"http://{host}:{port}", ["/a", "/b", "/c"], concurrency=1, pause_s=0.1)
    assert timed.statuses == [200, 200, 200]
    assert timed.wall_s >= 0.3 and sum(timed.latencies_ms) / 1000 <= timed.wall_s - 0.3
