"""Benchmark: relaycert's full scan against a bare asyncio STARTTLS loop, on loopback.

    .venv/bin/python bench/scan.py [--addresses 2000] [--concurrency 64] [--server auto]

One real server (Postfix when installed, else aiosmtpd in a separate process) serves every
address.  As root the benchmark runs in a private network namespace whose only interface is
loopback, so the server can answer on all of 127.0.0.0/8 and each probed address is distinct;
otherwise every address is 127.0.0.1.  Both loops run in this process at the same concurrency;
the server runs in other processes, so CPU time measured here is the client's.

Prints probes per second and client CPU milliseconds per probe for relaycert (probe, every rule,
store in SQLite) and for the bare loop, peak RSS, and a last line ``ratio: R`` (relaycert's rate
over the bare loop's; target >= 0.7 at concurrency 64, peak memory < 150 MB for 2000 addresses).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config.loader import parse  # noqa: E402
from monitor.demo import pki  # noqa: E402
from monitor.pipeline.scan import scan  # noqa: E402
from monitor.store.engine import Store  # noqa: E402

NETNS = "relaycert-bench"


def rerun_in_netns() -> int | None:
    """As root, run this script again inside a private network namespace whose only interface
    is loopback (so a server may listen on all of 127.0.0.0/8 without being reachable from
    anywhere else); its exit code, or ``None`` when that is not possible here."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return None
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
        command = ["ip", "netns", "exec", NETNS, sys.executable, *sys.argv, "--in-netns"]
        return subprocess.run(command, check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)


def server_chain(folder: Path) -> tuple[Path, Path]:
    """A bench CA (``ca.pem``) and the server's key and chain for mail1.contoso.com."""
    root = pki.make_ca("Bench Root")
    sub = pki.make_ca("Bench Issuing CA", root)
    leaf = pki.make_leaf(sub, ["mail1.contoso.com"])
    (folder / "ca.pem").write_bytes(root.cert_pem())
    return pki.write_chain(folder, "server", leaf, sub)


def addresses(count: int, distinct: bool) -> list[str]:
    if not distinct:
        return ["127.0.0.1"] * count
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def config_for(
    targets: list[str], port: int, concurrency: int, folder: Path, extra: str = ""
) -> object:
    (folder / "root.pem").write_bytes((folder / "ca.pem").read_bytes())
    endpoints = "".join(
        f'[[endpoints]]\nname = "e{i}"\nhost = "mail1.contoso.com"\nport = {port}\n'
        f'mode = "starttls"\nconnector = "relay"\naddresses = ["{address}"]\n'
        for i, address in enumerate(targets)
    )
    text = (
        '[tenant]\naccepted_domains = ["contoso.com"]\n'
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
        '[trust]\nuse_certifi = true\nextra_ca_files = ["root.pem"]\n'
        f'[probe]\nconcurrency = {concurrency}\ntimeout = "15s"\n'
        f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n' + extra + endpoints
    )
    import tomllib

    return parse(tomllib.loads(text), folder / "relaycert.toml")


async def bare_probe(address: str, port: int, context: ssl.SSLContext) -> bool:
    """The minimum a STARTTLS certificate probe does, with no checks and nothing stored."""
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
        writer.write(b"QUIT\r\n")
        await reply()
        return True
    finally:
        writer.close()


async def bare_loop(targets: list[str], port: int, concurrency: int) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    semaphore = asyncio.Semaphore(concurrency)

    async def one(address: str) -> bool:
        async with semaphore:
            try:
                return await asyncio.wait_for(bare_probe(address, port, context), 15)
            except (OSError, TimeoutError):
                return False

    return sum(await asyncio.gather(*(one(a) for a in targets)))


def start_server(kind: str, key: Path, chain: Path, all_interfaces: bool, processes: int):  # type: ignore[no-untyped-def]
    if kind == "postfix":
        from tests.postfix import Postfix

        return Postfix(key, chain, processes=processes, all_interfaces=all_interfaces).start()
    from monitor.demo.servers import free_port

    port = free_port()
    host = "0.0.0.0" if all_interfaces else "127.0.0.1"  # noqa: S104 - inside a loopback-only netns
    code = (
        "import sys, time\nfrom monitor.demo.servers import LoopbackSMTP\n"
        f"s = LoopbackSMTP('starttls', {str(key)!r}, {str(chain)!r}, host={host!r}, port={port})"
        ".start()\nprint('ready', flush=True)\ntime.sleep(10**6)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()

    class Handle:
        def __init__(self) -> None:
            self.port = port

        def stop(self) -> None:
            process.terminate()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()

    return Handle()


def measure(label: str, run) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", choices=("auto", "postfix", "aiosmtpd"), default="auto")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if not args.in_netns:
        code = rerun_in_netns()
        if code is not None:
            return code

    kind = args.server
    if kind == "auto":
        kind = "postfix" if Path("/usr/lib/postfix/sbin/master").exists() else "aiosmtpd"
    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-"))
    key, chain = server_chain(folder)
    targets = addresses(args.addresses, distinct=args.in_netns)
    server = start_server(kind, key, chain, args.in_netns, args.concurrency * 2)
    try:
        config = config_for(targets, server.port, args.concurrency, folder)
        store = Store.open(config.database_url())  # type: ignore[attr-defined]
        # Warm up before measuring: the server's process pool (Postfix forks smtpd processes on
        # demand) at full concurrency, and this process's imports and TLS contexts.
        asyncio.run(bare_loop(targets[: args.concurrency * 4], server.port, args.concurrency))
        rc_wall, rc_cpu, records = measure("relaycert", lambda: asyncio.run(scan(config, store)))  # type: ignore[arg-type]
        rc_ok = sum(1 for r in records if r.result.status.value == "ok")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bare_wall, bare_cpu, bare_ok = measure(
            "bare", lambda: asyncio.run(bare_loop(targets, server.port, args.concurrency))
        )
        store.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    n = args.addresses
    where = "distinct, private netns" if args.in_netns else "all 127.0.0.1"
    print(f"server: {kind}; addresses: {n} ({where}); concurrency: {args.concurrency}")
    print(
        f"relaycert: {n / rc_wall:8.1f} probes/s  {rc_cpu / n * 1000:6.2f} ms CPU/probe  "
        f"{rc_ok}/{n} ok  ({rc_wall:.2f} s wall)"
    )
    print(
        f"bare loop: {n / bare_wall:8.1f} probes/s  {bare_cpu / n * 1000:6.2f} ms CPU/probe  "
        f"{bare_ok}/{n} ok  ({bare_wall:.2f} s wall)"
    )
    print(f"peak RSS after relaycert's scan: {rss_mb:.1f} MB")
    print(f"ratio: {(n / rc_wall) / (n / bare_wall):.2f}")
    return 0 if rc_ok == n and bare_ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
