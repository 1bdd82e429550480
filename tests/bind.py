"""Debian's BIND 9 as an authoritative primary on loopback that accepts TSIG-signed dynamic
updates (RFC 2136) for ``contoso.test``, for the DNS-01 renewal test."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query

NAMED = shutil.which("named") or "/usr/sbin/named"
KEY_NAME = "relaycert-key."


def _free_port() -> int:
    """A port free for both UDP and TCP (named listens on both)."""
    from monitor.demo.ports import free_port

    while True:
        port = free_port(kind=socket.SOCK_DGRAM)
        with socket.socket() as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class Bind:
    def __init__(self, zone: str = "contoso.test") -> None:
        self.zone = zone
        self.root = Path(tempfile.mkdtemp(prefix="relaycert-bind-"))
        self.port = _free_port()
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Bind:
        root = self.root
        (root / f"{self.zone}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns.{self.zone}. admin.{self.zone}. 1 60 60 600 60\n"
            f"@ IN NS ns.{self.zone}.\nns IN A 127.0.0.1\n"
        )
        (root / "named.conf").write_text(f"""
options {{
    directory "{root}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{root}/named.pid";
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};
zone "{self.zone}" {{
    type primary;
    file "{root}/{self.zone}.zone";
    allow-update {{ key "{KEY_NAME}"; }};
}};
""")
        log = (root / "named.log").open("ab")
        self.process = subprocess.Popen(
            [NAMED, "-g", "-c", str(root / "named.conf"), "-n", "1"], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 20
        query = dns.message.make_query(self.zone, "SOA")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
                return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("named did not start: " + self.log()[-2000:])

    def log(self) -> str:
        path = self.root / "named.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Bind:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def available() -> bool:
    return Path(NAMED).exists() and os.geteuid() == 0
