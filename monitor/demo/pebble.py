"""Debian's pebble (a test ACME server) and pebble-challtestsrv (its DNS), on loopback, for the
demo's renewal and the renewal tests.  The package ships no TLS certificate for pebble, so one is
made here."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

from monitor.demo import pki, ports

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"


def installed() -> bool:
    return Path(PEBBLE).exists() and Path(CHALLTESTSRV).exists()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    return ports.free_port(kind=kind)


class Pebble:
    """``with Pebble(dns=...) as pebble:`` serves ``pebble.directory`` (HTTPS, ``pebble.ca_file``).

    ``dns`` is the DNS server pebble's validation authority asks (``host:port``); by default a
    pebble-challtestsrv that answers every A query with 127.0.0.1.  ``http_port`` is where the
    VA fetches HTTP-01 tokens.
    """

    def __init__(
        self,
        dns: str | None = None,
        validity_days: int = 90,
        eab_keys: dict[str, str] | None = None,
    ) -> None:
        self.eab_keys = eab_keys or {}
        self.challtest_management = free_port()  # pebble-challtestsrv's API (/set-txt...)
        self.root = Path(tempfile.mkdtemp(prefix="relaycert-pebble-"))
        self.port, self.management = free_port(), free_port()
        self.http_port = free_port()
        self.dns = dns
        self.own_dns = dns is None  # pebble-challtestsrv is started (again) with pebble
        self.validity = validity_days * 86400
        self.processes: list[subprocess.Popen[bytes]] = []
        ca = pki.make_ca("pebble-local-test-ca")
        leaf = pki.make_leaf(ca, ["localhost", "127.0.0.1"])
        self.key_file, self.cert_file = pki.write_chain(self.root, "localhost", leaf)
        self.ca_file = self.root / "ca.pem"
        self.ca_file.write_bytes(ca.cert_pem())

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _start_challtestsrv(self, log: IO[bytes]) -> None:
        """pebble-challtestsrv answers pebble's DNS queries (DNS-01 records, 127.0.0.1)."""
        dns_port = free_port(socket.SOCK_DGRAM)
        self.dns = f"127.0.0.1:{dns_port}"
        self.processes.append(
            subprocess.Popen(
                [
                    CHALLTESTSRV,
                    "-management",
                    f"127.0.0.1:{self.challtest_management}",
                    "-dns01",
                    self.dns,
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                ],
                stdout=log,
                stderr=log,
            )
        )

    def start(self) -> Pebble:
        log = (self.root / "pebble.log").open("ab")
        if self.own_dns:
            self._start_challtestsrv(log)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(self.cert_file),
                "privateKey": str(self.key_file),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(self.eab_keys),
                "externalAccountMACKeys": self.eab_keys,
                "certificateValidityPeriod": self.validity,
            }
        }
        (self.root / "pebble.json").write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        self.processes.append(
            subprocess.Popen(
                [PEBBLE, "-config", str(self.root / "pebble.json"), "-dnsserver", str(self.dns)],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self._get(self.directory)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pebble did not start: " + self.log()[-2000:])

    def _get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310
            return bytes(response.read())

    def root_pem(self) -> bytes:
        """Pebble's issuing root (made anew at every start), from its management API."""
        return self._get(f"https://127.0.0.1:{self.management}/roots/0")

    def log(self) -> str:
        path = self.root / "pebble.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
