"""A private Postfix instance on loopback, from Debian's package, for integration tests and the
benchmark.  It runs ``master -d`` with its own config, queue and log under a temporary folder, so
it never touches the machine's own Postfix."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MASTER = Path("/usr/lib/postfix/sbin/master")

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
myhostname = {banner}
inet_interfaces = {interfaces}
inet_protocols = ipv4
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtpd_tls_chain_files = {key}, {chain}
smtpd_tls_security_level = may
alias_maps =
alias_database =
mydestination =
local_recipient_maps =
notify_classes =
default_process_limit = {processes}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
"""

MASTER_CF = """\
{service} inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
anvil unix - - n - 1 anvil
proxymap unix - - n - - proxymap
tlsmgr unix - - n 1000? 1 tlsmgr
"""

# What a relaying instance needs besides (queue manager, cleanup, the smtp client...).
MASTER_CF_RELAY = """\
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
scache unix - - n - 1 scache
"""

QUEUES = [
    "incoming",
    "active",
    "deferred",
    "defer",
    "bounce",
    "trace",
    "flush",
    "corrupt",
    "hold",
    "saved",
    "maildrop",
]


@dataclass(frozen=True)
class Relay:
    """Relay ``probe_domain`` to ``next_hop`` (``None``: no route) with these client TLS
    settings: the ``smtp_tls_*`` side that Exchange Online would see."""

    probe_domain: str
    next_hop: tuple[str, int] | None
    client_key: Path | None = None
    client_chain: Path | None = None
    tls_level: str = "may"  # smtp_tls_security_level: may | encrypt | none

    def main_cf(self, etc: Path) -> str:
        lines = [
            "mynetworks = 127.0.0.0/8",
            f"relay_domains = {self.probe_domain}",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            f"smtp_tls_security_level = {self.tls_level}",
            "smtp_host_lookup = native",
            "smtp_tls_loglevel = 1",
            "delay_warning_time = 0",
            "bounce_notice_recipient = postmaster",
            "myorigin = postfix.test",
        ]
        if self.next_hop is not None:
            host, port = self.next_hop
            # The documented setup: the probe domain over the same `smtp` transport (hence the
            # same smtp_tls_* settings) as mail to Exchange Online.
            (etc / "transport").write_text(f"{self.probe_domain} smtp:[{host}]:{port}\n")
            lines.append(f"transport_maps = texthash:{etc / 'transport'}")
        if self.client_key is not None and self.client_chain is not None:
            lines.append(f"smtp_tls_chain_files = {self.client_key}, {self.client_chain}")
        return "\n".join(lines) + "\n"


def ensure_installed() -> str | None:
    """``None`` when Postfix is usable, else why not.  As root, installs Debian's package."""
    if MASTER.exists():
        return None
    if os.geteuid() != 0:
        return "Postfix is not installed and installing it needs root (apt-get install postfix)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "postfix"],
        env=env,
        capture_output=True,
        check=False,
        timeout=600,
    )
    return None if MASTER.exists() else "apt-get install postfix failed"


class Postfix:
    """``with Postfix(key, chain) as pf:`` serves the chain on ``127.0.0.1:pf.port``."""

    def __init__(
        self,
        key: Path,
        chain: Path,
        port: int | None = None,
        processes: int = 100,
        banner: str = "mx.postfix.test",
        all_interfaces: bool = False,
        relay: Relay | None = None,
    ) -> None:
        """``all_interfaces`` listens on every address: only for a private network namespace
        that has nothing but loopback (the benchmark uses that to serve all of 127.0.0.0/8)."""
        self.all_interfaces = all_interfaces
        # Its own folder under /tmp, world-searchable: Postfix's unprivileged daemons must reach
        # the queue, which pytest's private (0700) tmp_path does not allow.
        self.root = Path(tempfile.mkdtemp(prefix="relaycert-postfix-"))
        self.key, self.chain = key, chain
        self.port = port or _free_port()
        self.processes, self.banner = processes, banner
        self.relay = relay
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self, key: Path | None = None, chain: Path | None = None) -> None:
        self.key, self.chain = key or self.key, chain or self.chain
        etc = self.root / "etc"
        for sub in ("etc", "queue/pid", "queue/public", "queue/private", "data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        queues = [f"queue/{q}" for q in QUEUES] if self.relay else []
        for sub in queues:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("queue/public", "queue/private", "data", *queues):
            shutil.chown(self.root / sub, user="postfix")
        self.root.chmod(0o755)
        (etc / "main.cf").write_text(
            MAIN_CF.format(
                root=self.root,
                key=self.key,
                chain=self.chain,
                banner=self.banner,
                processes=self.processes,
                interfaces="all" if self.all_interfaces else "127.0.0.1",
            )
            + (self.relay.main_cf(etc) if self.relay else "")
        )
        service = str(self.port) if self.all_interfaces else f"127.0.0.1:{self.port}"
        master = MASTER_CF.format(service=service) + (MASTER_CF_RELAY if self.relay else "")
        (etc / "master.cf").write_text(master)

    def start(self, timeout: float = 20) -> Postfix:
        self.configure()
        self.process = subprocess.Popen(
            [str(MASTER), "-c", str(self.root / "etc"), "-d"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postfix master exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"postfix did not greet on port {self.port}: {self.log()[-2000:]}")

    def reload(self) -> None:
        """What ``postfix reload`` does: SIGHUP to master, which re-reads main.cf."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    from monitor.demo.ports import free_port

    return free_port()
