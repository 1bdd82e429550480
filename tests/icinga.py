"""A real Icinga 2 (Debian's ``icinga2``) on a configuration directory of its own, for the
plugin tests: no API, no cluster, only the checker, the services it is given, and a
GraphiteWriter that sends each check's *parsed* performance data to a loopback TCP receiver.
What Icinga records for a service (state, output) is read from its state file, dumped when it
stops."""

from __future__ import annotations

import json
import shutil
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ICINGA = shutil.which("icinga2") or "/usr/sbin/icinga2"


def installed() -> bool:
    return Path(ICINGA).exists()


@dataclass
class Graphite:
    """A Graphite plaintext receiver: ``metric value timestamp`` lines."""

    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def values(self) -> dict[str, float]:
        with self.lock:
            return {line.split()[0]: float(line.split()[1]) for line in self.lines if line.strip()}


@contextmanager
def graphite() -> Iterator[tuple[Graphite, int]]:
    sink = Graphite()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                with sink.lock:
                    sink.lines.append(raw.decode("utf-8", "replace").strip())

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield sink, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Recorded:
    state: int
    output: str
    exit_status: int
    performance_data: list[str]


def run(
    directory: Path,
    objects: str,
    services: list[str],
    sink: tuple[Graphite, int],
    timeout: float = 90,
) -> dict[str, Recorded]:
    """Run Icinga 2 with ``objects`` until every service in ``services`` has a check result
    in the Graphite stream, stop it, and return what it recorded per service."""
    received, graphite_port = sink
    for sub in ("run", "lib", "log", "cache", "spool"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    config = directory / "icinga2.conf"
    config.write_text(
        "include <itl>\n"
        'object CheckerComponent "checker" { }\n'
        'object GraphiteWriter "graphite" {\n'
        f'  host = "127.0.0.1"\n  port = {graphite_port}\n'
        "  enable_send_thresholds = true\n  enable_send_metadata = true\n}\n"
        'object Host "relay" { check_command = "dummy"; enable_active_checks = false }\n' + objects
    )
    command = [
        ICINGA,
        "daemon",
        "-c",
        str(config),
        "-DRunAsUser=root",
        "-DRunAsGroup=root",
        f"-DConfigDir={directory}",
        f"-DDataDir={directory / 'lib'}",
        f"-DLogDir={directory / 'log'}",
        f"-DCacheDir={directory / 'cache'}",
        f"-DSpoolDir={directory / 'spool'}",
        f"-DInitRunDir={directory / 'run'}",
    ]
    log = (directory / "icinga2.out").open("w")
    # its own session: Icinga signals its whole process group when it stops
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    state = directory / "lib" / "icinga2.state"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            values = received.values()
            if all(
                any(f".services.{s}." in k and k.endswith(".metadata.state") for k in values)
                for s in services
            ):
                break
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    recorded: dict[str, Recorded] = {}
    text = state.read_text() if state.exists() else ""
    for name in services:
        marker = f'"name":"relay!{name}","type":"Service","update":'
        start = text.find(marker)
        assert start >= 0, f"Icinga recorded nothing for {name}:\n{_tail(directory)}"
        update, _ = json.JSONDecoder().raw_decode(text, start + len(marker))
        result = update.get("last_check_result")
        assert result, f"Icinga never checked {name}:\n{_tail(directory)}"
        recorded[name] = Recorded(
            result["state"],
            result["output"],
            result["exit_status"],
            list(result.get("performance_data") or []),
        )
    return recorded


def _tail(directory: Path) -> str:
    out = directory / "icinga2.out"
    return "\n".join(out.read_text().splitlines()[-30:]) if out.exists() else ""
