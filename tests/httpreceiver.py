"""A real HTTP server on loopback that records what Teams/webhook channels post to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """``statuses``: answers to give, in order (then 200); ``delay``: seconds before answering."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    hang: bool = False  # while True, requests get no answer (the connection is then dropped)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every request received
    accepted: list[dict[str, Any]] = field(default_factory=list)  # answered 2xx and completed
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-token"

    def bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.accepted]


@contextmanager
def http_receiver(statuses: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(statuses=list(statuses or []), delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = {"path": self.path, "headers": dict(self.headers), "body": body}
            with receiver.lock:
                receiver.requests.append(request)
            while receiver.hang:
                time.sleep(0.05)
                if not receiver.hang:
                    self.close_connection = True
                    return  # never answered: the sender must not count it as delivered
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            if receiver.delay:
                time.sleep(receiver.delay)
            if 200 <= status < 300:  # recorded before answering: the sender may check at once
                with receiver.lock:
                    receiver.accepted.append(request)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: object,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``handler``'s request with ``body`` as JSON (the ACME and ARI stand-ins)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
