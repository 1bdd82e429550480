"""HTTP-01: the answer at ``http://<domain>/.well-known/acme-challenge/<token>``, from a built-in
responder on ``listen`` or as a file under ``webroot`` for the web server already there
(settings: :class:`~monitor.renewal.settings.Http01Settings`)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitor.errors import RenewalError
from monitor.renewal.settings import Http01Settings
from monitor.renewal.solvers.base import Solver, host_port


class Http01Standalone:
    """A small HTTP server that answers only ACME challenge paths."""

    challenge = "http-01"

    def __init__(self, settings: Http01Settings, where: str) -> None:
        self.tokens: dict[str, str] = {}
        host, port = host_port(settings.listen or "0.0.0.0:80", 80)
        tokens = self.tokens

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = tokens.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise RenewalError(
                f"http01 solver: cannot listen on {host}:{port}: "
                f"{exc.strerror}; change solver.listen"
            ) from exc
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def present(self, domain: str, token_path: str, validation: str) -> None:
        self.tokens[token_path] = validation

    def cleanup(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.tokens.clear()


class Http01Webroot:
    """Writes the token under ``webroot/.well-known/acme-challenge/`` for a web server to serve."""

    challenge = "http-01"

    def __init__(self, settings: Http01Settings, where: str) -> None:
        if settings.webroot is None:  # make() chooses this solver only with a webroot
            raise RenewalError(f"{where}.solver.webroot: not set")
        self.webroot = settings.webroot
        self.written: list[Path] = []

    def present(self, domain: str, token_path: str, validation: str) -> None:
        path = self.webroot / token_path.lstrip("/")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(validation)
        except OSError as exc:
            raise RenewalError(f"http01 solver: cannot write {path}: {exc.strerror}") from exc
        self.written.append(path)

    def cleanup(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


def make(settings: Http01Settings, where: str) -> Solver:
    """The webroot solver when ``webroot`` is set, the built-in responder otherwise."""
    if settings.webroot is not None:
        return Http01Webroot(settings, where)
    return Http01Standalone(settings, where)
