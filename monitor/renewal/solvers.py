"""Challenge solvers: prove control of a name to the ACME server.

A solver has one contract: ``present(domain, token_path, validation)`` makes the answer
available, ``cleanup()`` removes everything it made.  HTTP-01 answers at
``http://<domain>/.well-known/acme-challenge/<token>`` (built-in responder or a webroot); DNS-01
answers with a TXT record at ``_acme-challenge.<domain>`` (RFC 2136 or a hook).  Solvers are
synchronous: the whole ACME exchange runs in a worker thread (``acme`` is requests-based).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from monitor.errors import RenewalError
from monitor.renewal.settings import DnsHookSettings, Http01Settings, Rfc2136Settings
from monitor.secrets import read_secret


class Solver(Protocol):
    challenge: str  # "http-01" | "dns-01"

    def present(self, domain: str, token_path: str, validation: str) -> None: ...

    def cleanup(self) -> None: ...


def _host_port(text: str, default: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (text, default)


class Http01Standalone:
    """A small HTTP server that answers only ACME challenge paths."""

    challenge = "http-01"

    def __init__(self, settings: Http01Settings) -> None:
        self.tokens: dict[str, str] = {}
        host, port = _host_port(settings.listen or "0.0.0.0:80", 80)
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

    def __init__(self, webroot: Path) -> None:
        self.webroot = webroot
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


def record_name(domain: str) -> str:
    return "_acme-challenge." + domain.removeprefix("*.").rstrip(".") + "."


class Rfc2136:
    """Adds and removes the TXT record with TSIG-signed dynamic updates, then waits until the
    primary serves it."""

    challenge = "dns-01"

    def __init__(self, settings: Rfc2136Settings, where: str) -> None:
        self.settings = settings
        self.host, self.port = _host_port(settings.server, 53)
        secret = (
            read_secret(
                f"{where}.solver.key_secret", settings.key_secret_env, settings.key_secret_file
            )
            or ""
        )
        self.keyring = dns.tsigkeyring.from_text({settings.key_name: secret})
        self.algorithm = dns.name.from_text(settings.algorithm)
        self.zone = dns.name.from_text(settings.zone)
        self.added: list[tuple[str, str]] = []

    def _update(self, name: str, value: str, add: bool) -> None:
        update = dns.update.Update(self.zone, keyring=self.keyring, keyalgorithm=self.algorithm)
        if add:
            update.add(name, 60, "TXT", f'"{value}"')
        else:
            update.delete(name, "TXT", f'"{value}"')
        try:
            response = dns.query.tcp(update, self.host, port=self.port, timeout=10)
        except dns.tsig.PeerError as exc:  # "The peer didn't like the signature we sent"
            raise RenewalError(
                f"rfc2136 solver: {self.host}:{self.port} rejected the TSIG signature "
                f"({type(exc).__name__}): key_name, the secret or the algorithm do not match "
                "the server's key"
            ) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise RenewalError(
                f"rfc2136 solver: update to {self.host}:{self.port} failed: {exc}"
            ) from exc
        if response.rcode() != dns.rcode.NOERROR:
            raise RenewalError(
                f"rfc2136 solver: {self.host}:{self.port} refused the update "
                f"({dns.rcode.to_text(response.rcode())}); check the TSIG key and "
                "the zone's update policy"
            )

    def _served(self, name: str, value: str) -> bool:
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        try:
            answer = dns.query.udp(query, self.host, port=self.port, timeout=3)
        except (OSError, dns.exception.DNSException):
            return False
        return any(
            value.encode() in b"".join(r.strings)
            for rrset in answer.answer
            for r in rrset
            if rrset.rdtype == dns.rdatatype.TXT
        )

    def present(self, domain: str, token_path: str, validation: str) -> None:
        name = record_name(domain)
        self._update(name, validation, add=True)
        self.added.append((name, validation))
        deadline = time.monotonic() + self.settings.propagation_timeout.total_seconds()
        while not self._served(name, validation):
            if time.monotonic() > deadline:
                raise RenewalError(
                    f"rfc2136 solver: {name} TXT not served by "
                    f"{self.host}:{self.port} within the propagation timeout"
                )
            time.sleep(0.5)

    def cleanup(self) -> None:
        for name, value in self.added:
            # A stale challenge record is harmless; the next order adds its own.
            with contextlib.suppress(RenewalError):
                self._update(name, value, add=False)
        self.added.clear()


class DnsHook:
    challenge = "dns-01"

    def __init__(self, settings: DnsHookSettings) -> None:
        self.settings = settings
        self.added: list[tuple[str, str]] = []

    def _run(self, action: str, name: str, value: str) -> None:
        env = {
            **os.environ,
            "RELAYCERT_DNS_ACTION": action,
            "RELAYCERT_DNS_NAME": name,
            "RELAYCERT_DNS_VALUE": value,
        }
        try:
            done = subprocess.run(
                list(self.settings.command),
                env=env,
                capture_output=True,
                timeout=self.settings.timeout.total_seconds(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RenewalError(f"dns-hook solver: {self.settings.command[0]}: {exc}") from exc
        if done.returncode != 0:
            raise RenewalError(
                f"dns-hook solver: {self.settings.command[0]} {action} exited {done.returncode}"
            )

    def present(self, domain: str, token_path: str, validation: str) -> None:
        name = record_name(domain)
        self._run("add", name, validation)
        self.added.append((name, validation))

    def cleanup(self) -> None:
        for name, value in self.added:
            with contextlib.suppress(RenewalError):
                self._run("remove", name, value)
        self.added.clear()


def make_solver(settings: Http01Settings | Rfc2136Settings | DnsHookSettings, where: str) -> Solver:
    if isinstance(settings, Http01Settings):
        if settings.webroot is not None:
            return Http01Webroot(settings.webroot)
        return Http01Standalone(settings)
    if isinstance(settings, Rfc2136Settings):
        return Rfc2136(settings, where)
    return DnsHook(settings)
