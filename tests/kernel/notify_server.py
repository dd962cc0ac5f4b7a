"""A loopback HTTP server for the notification tests: it records each request and answers with the
statuses it is given, in order (then 200)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """What the server was sent, and what it will answer next."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    """(method, path, JSON body) of each request, in order."""
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def bodies(self, path: str | None = None) -> list[Any]:
        with self.lock:
            return [body for _, p, body in self.requests if path is None or p == path]


@contextmanager
def loopback_server() -> Iterator[Received]:
    """Serve on 127.0.0.1, any free port, in a thread; ``Received.url`` is its base URL."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            with received.lock:
                received.requests.append(("POST", self.path, body))
                status = received.statuses.pop(0) if received.statuses else 200
            payload = b'{"ok": true}' if status < 400 else b'{"ok": false}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="notify-loopback", daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
