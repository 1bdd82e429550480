"""A CA's CRL on a loopback HTTP server, for the revocation tests: it serves whatever CRL the
test publishes, or misbehaves on request (a huge body, a gzip bomb, garbage, a slow answer, a
redirect loop, a server error).  It counts the requests, so a test can tell a cached CRL from a
fetch."""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CrlServer:
    def __init__(self) -> None:
        self.crl = b""
        # When set, each request gets a CRL made then (a short nextUpdate, like a CA that
        # publishes often).
        self.factory: Callable[[], bytes] | None = None
        self.mode = "ok"  # ok | huge | gzip | garbage | slow | redirect | bomb-redirect | error
        self.requests = 0
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/intermediate.crl"

    def publish(self, crl: bytes) -> None:
        with self.lock:
            self.crl = crl


@cache
def gzip_bomb(mebibytes: int = 256) -> bytes:
    """``mebibytes`` MiB of zeros, gzip-compressed (about 1 KiB a MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\x00" * (1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(mebibytes)) + packer.flush()


@contextmanager
def crl_server() -> Iterator[CrlServer]:
    state = CrlServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
                mode, body, factory = state.mode, state.crl, state.factory
            if factory is not None:
                body = factory()
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "bomb-redirect":  # a redirect whose body is a gzip bomb
                bomb = gzip_bomb()
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(bomb)
                return
            if mode == "error":
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "slow":
                time.sleep(30)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            if mode == "huge":  # no Content-Length: the size shows only while reading
                self.end_headers()
                try:
                    for _ in range(4096):
                        self.wfile.write(b"\x00" * 16384)  # 64 MiB if nobody stops reading
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            if mode == "gzip":  # a bomb: 256 MiB of zeros in about 256 KiB
                body = gzip_bomb()
                self.send_header("Content-Encoding", "gzip")
            if mode == "garbage":
                body = b"this is not a certificate revocation list"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.httpd = httpd
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
