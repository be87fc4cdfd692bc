"""The API in this process: uvicorn in a background thread, for end-to-end tests that share objects with it
(the loaded embedding model, the engine the test writes through)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from services.api.server import KeystrokeHttpProtocol


class Server:
    """uvicorn in a background thread, on a socket bound to a free loopback port before it starts, with the
    protocol `trawl serve` uses."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            # as `trawl serve` runs it: keystrokes answered in the protocol (on the embedded engine), no access log
            uvicorn.Config(app, log_level="warning", lifespan="on", http=KeystrokeHttpProtocol, access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()
