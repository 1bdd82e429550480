"""A DNSSEC-signed zone and a validating resolver on loopback, for the DANE tests.

Debian's BIND 9 serves ``contoso.com`` signed (``dnssec-keygen`` + ``dnssec-signzone``) and
``fabrikam.com`` unsigned; Debian's unbound, with its own configuration and the signed zone's
key as its only trust anchor, resolves both through stub zones (the root too, so no query ever
leaves loopback) and sets the AD bit on what it validated.  Never the system resolver.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query

from tests.bind import NAMED, _free_port

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
KEYGEN = shutil.which("dnssec-keygen") or "/usr/bin/dnssec-keygen"
SIGNZONE = shutil.which("dnssec-signzone") or "/usr/bin/dnssec-signzone"
SIGNED, UNSIGNED = "contoso.com", "fabrikam.com"


def available() -> str | None:
    """What is missing to run the DNSSEC tests, or ``None``."""
    for tool in (NAMED, UNBOUND, KEYGEN, SIGNZONE):
        if not Path(tool).exists():
            return f"{tool} is not installed (Debian packages bind9, bind9-dnsutils, unbound)"
    return None


def _wait(port: int, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    query = dns.message.make_query(name, "SOA")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return
        except Exception:
            time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"{name} server did not start: {text[-2000:]}")


class DnssecLab:
    """``with DnssecLab(records) as lab:``: ``lab.resolver`` is ``127.0.0.1:port`` of the
    validating resolver.  ``records`` are zone-file lines, relative to their zone: ``signed``
    for contoso.com, ``unsigned`` for fabrikam.com."""

    def __init__(self, signed: list[str], unsigned: list[str] | None = None, ttl: int = 60) -> None:
        self.signed, self.unsigned, self.ttl = signed, unsigned or [], ttl
        self.root = Path(tempfile.mkdtemp(prefix="relaycert-dnssec-"))
        self.bind_port, self.port = _free_port(), _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _zone(self, name: str, lines: list[str]) -> str:
        return (
            f"$TTL {self.ttl}\n@ IN SOA ns.{name}. admin.{name}. 1 60 60 600 60\n"
            f"@ IN NS ns.{name}.\n"
            "ns IN A 127.0.0.1\n" + "".join(f"{line}\n" for line in lines)
        )

    def _sign(self) -> str:
        """Sign contoso.com; returns its KSK's DNSKEY record (the trust anchor)."""
        root = self.root
        (root / f"{SIGNED}.zone").write_text(self._zone(SIGNED, self.signed))
        names = []
        for flags in (["-f", "KSK"], []):
            done = subprocess.run(
                [KEYGEN, "-q", "-K", str(root), "-a", "ECDSAP256SHA256", *flags, SIGNED],
                capture_output=True,
                text=True,
                check=True,
            )
            names.append(done.stdout.strip())
        subprocess.run(
            [
                SIGNZONE,
                "-q",
                "-K",
                str(root),
                "-S",
                "-o",
                SIGNED,
                "-f",
                str(root / f"{SIGNED}.signed"),
                str(root / f"{SIGNED}.zone"),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        )
        key = (root / f"{names[0]}.key").read_text()
        record = next(line for line in key.splitlines() if "DNSKEY" in line)
        return " ".join(record.split())

    def start(self) -> DnssecLab:
        root = self.root
        anchor = self._sign()
        (root / f"{UNSIGNED}.zone").write_text(self._zone(UNSIGNED, self.unsigned))
        (root / "named.conf").write_text(f"""
options {{
    directory "{root}";
    listen-on port {self.bind_port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{root}/named.pid";
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
zone "{SIGNED}" {{ type primary; file "{root}/{SIGNED}.signed"; }};
zone "{UNSIGNED}" {{ type primary; file "{root}/{UNSIGNED}.zone"; }};
""")
        (root / "unbound.conf").write_text(f"""
server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "{root}"
    pidfile: "{root}/unbound.pid"
    use-syslog: no
    logfile: "{root}/unbound.log"
    verbosity: 1
    module-config: "validator iterator"
    trust-anchor: "{anchor}"
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
stub-zone:
    name: "{SIGNED}"
    stub-addr: 127.0.0.1@{self.bind_port}
stub-zone:
    name: "{UNSIGNED}"
    stub-addr: 127.0.0.1@{self.bind_port}
stub-zone:
    name: "."
    stub-addr: 127.0.0.1@{self.bind_port}
""")
        named_log = root / "named.log"
        with named_log.open("ab") as log:
            named = subprocess.Popen(
                [NAMED, "-g", "-c", str(root / "named.conf"), "-n", "1"], stdout=log, stderr=log
            )
        self.processes.append(named)
        _wait(self.bind_port, SIGNED, named, named_log)
        unbound_log = root / "unbound.out"
        with unbound_log.open("ab") as log:
            unbound = subprocess.Popen(
                [UNBOUND, "-d", "-c", str(root / "unbound.conf")], stdout=log, stderr=log
            )
        self.processes.append(unbound)
        _wait(self.port, SIGNED, unbound, root / "unbound.log")
        return self

    def validated(self, name: str, rdtype: str) -> bool:
        """Does the resolver answer ``name`` with the AD bit (a check of the lab itself)?"""
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD
        answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=2)
        return bool(answer.flags & dns.flags.AD)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DnssecLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
