"""The load generator the benchmarks run as a second process on loopback:

    python -m services.bench.load < spec.json > result.json

with a spec {"base_url", "paths", "concurrency"} (and for POSTs "method": "POST" and "bodies", one JSON text
per path; "pause_s": each client's wait after an answer, untimed; "marker": a text whose presence in each answer's
body is told back); it answers {"latencies_ms", "statuses", "wall_s"} (and "marked", one flag per path).

Its client is lean, as wrk or hey are: one keep-alive HTTP/1.1 connection per thread, connected before the
clock starts, a request written as one prebuilt line and the answer read by its Content-Length (or its
chunks). What the clock measures is then the service and the loopback, not the client's own parsing. The
standard library's client parses every answer's headers with the e-mail parser: on the 2-core machine it
cost 0.33 ms per keystroke at p50 and 0.58 ms at p99 (against 1.4 and 3.8 ms in all), and httpx half a
millisecond more than that.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.parse

from services.bench.common import run_concurrently

_MAX_HEAD = 64 * 1024


class HttpError(RuntimeError):
    """The server's answer was not HTTP/1.1 this client can read, or it closed the connection mid-way."""

    def __init__(self, message: str, *, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer  # closed before the first byte of an answer


class KeepAliveClient:
    """GET and POST over one persistent connection. It reads the status, Content-Length, Transfer-Encoding and
    Connection headers and the whole body; it reconnects when the server said it would close."""

    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        self._address = (host, port)
        self._host_header = f"{host}:{port}".encode()
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def connect(self) -> None:
        self.close()
        sock = socket.create_connection(self._address, timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buffer = sock, b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of `GET path`. A kept connection the server has closed meanwhile (its keep-alive
        timeout) is opened again and the request sent once more, as HTTP clients do for a GET."""
        return self.request(b"GET " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + self._host_header + b"\r\n\r\n")

    def post(self, path: str, body: bytes, content_type: bytes = b"application/json") -> tuple[int, bytes]:
        """(status, body) of `POST path`. Never sent twice: a POST need not be idempotent."""
        head = (
            b"POST " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + self._host_header
            + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )  # fmt: skip
        return self.request(head + body, resend=False)

    def request(self, request: bytes, *, resend: bool = True) -> tuple[int, bytes]:
        """(status, body) of a whole request as written; `resend`: once more on a kept connection that the
        server closed before answering."""
        try:
            return self._exchange(request, resend)
        except BaseException:
            self.close()  # a connection left mid-answer would hand its rest to the next request
            raise

    def _exchange(self, request: bytes, resend: bool) -> tuple[int, bytes]:
        reused = self._sock is not None
        if self._sock is None:
            self.connect()
        try:
            assert self._sock is not None
            self._sock.sendall(request)
            head = self._read_head()
        except (HttpError, ConnectionError) as exc:
            if not resend or not reused or self._buffer or (isinstance(exc, HttpError) and not exc.before_answer):
                raise
            self.connect()
            assert self._sock is not None
            self._sock.sendall(request)
            head = self._read_head()
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = self._read_chunked()
        else:
            body = self._read_exactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return int(status_line[1]), body

    def _fill(self) -> None:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise HttpError("the server closed the connection mid-answer", before_answer=not self._buffer)
        self._buffer += data

    def _read_head(self) -> bytes:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise HttpError("an answer's headers passed 64 KiB")
            self._fill()
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        return head

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _read_line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_line().split(b";", 1)[0], 16):
            parts.append(self._read_exactly(size))
            self._read_exactly(2)  # the CRLF after each chunk
        while self._read_line():  # trailers, up to the empty line
            pass
        return b"".join(parts)


def main() -> None:
    spec = json.loads(sys.stdin.read())
    url = urllib.parse.urlsplit(spec["base_url"])
    local = threading.local()
    clients: list[KeepAliveClient] = []
    lock = threading.Lock()

    def connect() -> None:
        client = KeepAliveClient(url.hostname or "127.0.0.1", url.port or 80)
        client.get("/healthz")
        local.client = client
        with lock:
            clients.append(client)

    paths: list[str] = spec["paths"]
    bodies: list[str] | None = spec.get("bodies")
    if spec.get("method", "GET") == "POST":
        if bodies is None or len(bodies) != len(paths):
            raise SystemExit("a POST spec needs one body per path")
    elif bodies is not None:
        raise SystemExit("bodies are for POST")

    marker: bytes | None = spec["marker"].encode() if spec.get("marker") else None
    marked = [False] * len(paths)

    def call(i: int) -> int:
        client: KeepAliveClient = local.client
        # the whole body is read, as a client that uses the answer would
        status, body = client.get(paths[i]) if bodies is None else client.post(paths[i], bodies[i].encode())
        if marker is not None:
            marked[i] = marker in body
        return status

    result = run_concurrently(
        range(len(paths)), call, int(spec["concurrency"]), setup=connect, pause_s=float(spec.get("pause_s", 0.0))
    )
    for c in clients:
        c.close()
    out = {"latencies_ms": result.latencies_ms, "statuses": result.statuses, "wall_s": result.wall_s}
    json.dump(out | ({"marked": marked} if marker is not None else {}), sys.stdout)


if __name__ == "__main__":
    main()
