"""The three clients ``bench/scan.py`` compares, each measured the same way: wall time for
every address, client CPU, probes that succeeded.

- the bare loop: the minimum a STARTTLS certificate probe does, in the bench's own process;
- blackbox_exporter (Go, Debian's ``prometheus-blackbox-exporter``): its STARTTLS module with CA
  verification, driven over HTTP by a lean keep-alive client here; its CPU read from /proc;
- relaycert: ``relaycert scan --format json`` as a whole process (start-up, probe, every rule,
  store, JSON), CPU from the child's rusage; and the same process scanning one endpoint of the
  same configuration, whose CPU is the start-up the per-probe figure leaves out.
"""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One client's pass over every address."""

    wall: float  # seconds
    cpu: float  # client CPU seconds (start-up excluded where ``startup_cpu`` is set)
    ok: int
    startup_cpu: float = 0.0
    peak_rss_mb: float = 0.0
    busy: float = 0.0  # cores busy on average over the machine (client, server, everything)


class Machine:
    """How busy every core was between :meth:`start` and :meth:`cores` (from /proc/stat)."""

    def __init__(self) -> None:
        self.idle, self.total = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; all but guest time

    def cores(self) -> float:
        idle, total = self._read()
        spent = max(total - self.total, 1)
        return (os.cpu_count() or 1) * (1 - (idle - self.idle) / spent)


def byte_compile() -> None:
    """Compile relaycert's modules as ``pip install`` does for an installed package, so a
    command measured here does not recompile them from source at every start (an editable
    install from a checkout leaves that to the first import, and with PYTHONDONTWRITEBYTECODE
    set, as on the development machines, to every start: ~0.05 s of CPU per command)."""
    for package in ("monitor", "checks", "notifications"):
        compileall.compile_dir(ROOT / package, quiet=1)


# -- the bare loop -----------------------------------------------------------------------------


async def bare_probe(
    address: str, port: int, context: ssl.SSLContext, ehlo_again: bool = False
) -> bool:
    """The minimum a STARTTLS certificate probe does, with no checks and nothing stored;
    ``ehlo_again``: EHLO after the handshake too, the dialogue relaycert and the exporter keep
    (RFC 3207 asks for it, and it keeps the server's log clean)."""
    reader, writer = await asyncio.open_connection(address, port)
    try:

        async def reply() -> bytes:
            while True:
                line = await reader.readline()
                if line[3:4] != b"-":
                    return line

        await reply()
        writer.write(b"EHLO bench.test\r\n")
        await reply()
        writer.write(b"STARTTLS\r\n")
        if not (await reply()).startswith(b"220"):
            return False
        await writer.start_tls(context, server_hostname="mail1.contoso.com")
        ssl_object = writer.get_extra_info("ssl_object")
        ssl_object._sslobj.get_unverified_chain()
        if ehlo_again:
            writer.write(b"EHLO bench.test\r\n")
            await reply()
        writer.write(b"QUIT\r\n")
        await reply()
        return True
    finally:
        writer.close()


async def bare_loop(targets: list[str], port: int, concurrency: int, ehlo_again: bool) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    semaphore = asyncio.Semaphore(concurrency)

    async def one(address: str) -> bool:
        async with semaphore:
            try:
                probe = bare_probe(address, port, context, ehlo_again)
                return await asyncio.wait_for(probe, 15)
            except (OSError, TimeoutError):
                return False

    return sum(await asyncio.gather(*(one(a) for a in targets)))


def run_bare(targets: list[str], port: int, concurrency: int, ehlo_again: bool = False) -> Run:
    machine = Machine()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok = asyncio.run(bare_loop(targets, port, concurrency, ehlo_again))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Run(wall, cpu, ok, busy=machine.cores())


# -- blackbox_exporter -------------------------------------------------------------------------

BLACKBOX = "prometheus-blackbox-exporter"

# The documented STARTTLS dialogue, the same steps relaycert takes: greeting, EHLO, STARTTLS,
# handshake (chain verified against the bench CA), EHLO again, QUIT.
MODULE = """\
modules:
  smtp_starttls:
    prober: tcp
    timeout: 15s
    tcp:
      query_response:
        - expect: "^220 "
        - send: "EHLO bench.test\\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO bench.test\\r"
        - expect: "^250 "
        - send: "QUIT\\r"
        - expect: "^221"
      tls_config:
        ca_file: {ca}
        server_name: mail1.contoso.com
"""


def blackbox_available() -> bool:
    return shutil.which(BLACKBOX) is not None


class Blackbox:
    """A blackbox_exporter process on loopback with the STARTTLS module."""

    def __init__(self, folder: Path, ca: Path) -> None:
        (folder / "blackbox.yml").write_text(MODULE.format(ca=ca))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = (folder / "blackbox.log").open("wb")
        self.process = subprocess.Popen(
            [
                BLACKBOX,
                f"--config.file={folder / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{BLACKBOX} did not start; see {folder / 'blackbox.log'}")

    def cpu(self) -> float:
        """The exporter's CPU seconds so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.log.close()

    def run(self, targets: list[str], port: int, concurrency: int) -> Run:
        machine = Machine()
        cpu0, wall0 = self.cpu(), time.perf_counter()
        ok = asyncio.run(self._drive(targets, port, concurrency))
        wall, cpu = time.perf_counter() - wall0, self.cpu() - cpu0
        return Run(wall, cpu, ok, busy=machine.cores())

    async def _drive(self, targets: list[str], port: int, concurrency: int) -> int:
        """``concurrency`` keep-alive HTTP connections asking for one probe at a time."""
        queue = list(reversed(targets))
        ok = 0

        async def worker() -> None:
            nonlocal ok
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                while queue:
                    address = queue.pop()
                    writer.write(
                        f"GET /probe?module=smtp_starttls&target={address}:{port} HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\n\r\n".encode()
                    )
                    body = await _http_body(reader)
                    ok += b"\nprobe_success 1" in body
            finally:
                writer.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok


async def _http_body(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response's body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    if b"content-length" in headers:
        return await reader.readexactly(int(headers[b"content-length"]))
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return body


# -- relaycert as a whole process --------------------------------------------------------------


def _relaycert(config: Path, *extra: str) -> tuple[float, float, float, bytes]:
    """Run ``relaycert scan --format json``; wall, CPU, peak RSS (MB) and its output."""
    command = [str(ROOT / ".venv/bin/relaycert"), "scan", "--config", str(config)]
    out = config.parent / "scan.json"
    wall0 = time.perf_counter()
    with out.open("wb") as stdout:
        process = subprocess.Popen([*command, "--format", "json", *extra], stdout=stdout)
        _, _, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - wall0
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read_bytes()


def run_relaycert(config: Path) -> Run:
    """The whole process; CPU/probe leaves out start-up (the CPU of the same process scanning
    one endpoint of the same configuration: imports, configuration load, store, plan)."""
    _, startup, _, _ = _relaycert(config, "--endpoint", "e0")
    machine = Machine()
    wall, cpu, rss, output = _relaycert(config)
    busy = machine.cores()
    results = json.loads(output)["results"]
    ok = sum(1 for r in results if r["status"] == "ok")
    return Run(wall, cpu - startup, ok, startup_cpu=startup, peak_rss_mb=rss, busy=busy)
