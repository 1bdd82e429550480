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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clients import Blackbox, Run, blackbox_available, run_bare, run_relaycert  # noqa: E402

from monitor.config.loader import Config, load  # noqa: E402
from monitor.demo import pki  # noqa: E402

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


def config_text(
    targets: list[str], port: int, concurrency: int, folder: Path, extra: str = ""
) -> str:
    """A configuration probing each of ``targets`` as its own endpoint (``e0``...)."""
    (folder / "root.pem").write_bytes((folder / "ca.pem").read_bytes())
    endpoints = "".join(
        f'[[endpoints]]\nname = "e{i}"\nhost = "mail1.contoso.com"\nport = {port}\n'
        f'mode = "starttls"\nconnector = "relay"\naddresses = ["{address}"]\n'
        for i, address in enumerate(targets)
    )
    return (
        '[tenant]\naccepted_domains = ["contoso.com"]\n'
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
        '[trust]\nuse_certifi = true\nextra_ca_files = ["root.pem"]\n'
        f'[probe]\nconcurrency = {concurrency}\ntimeout = "15s"\n'
        f'[database]\nurl = "sqlite:///{folder / "bench.db"}"\n' + extra + endpoints
    )


def config_for(
    targets: list[str], port: int, concurrency: int, folder: Path, extra: str = ""
) -> Config:
    """:func:`config_text`, written to ``folder/relaycert.toml`` and loaded."""
    path = folder / "relaycert.toml"
    path.write_text(config_text(targets, port, concurrency, folder, extra))
    return load(path)


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


def median_run(runs: list[Run]) -> Run:
    """The round with the median wall time (its CPU and counts with it)."""
    return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]


def line(label: str, run: Run, n: int) -> str:
    return (
        f"{label:<22} {n / run.wall:8.1f} probes/s  {run.cpu / n * 1000:6.2f} ms CPU/probe  "
        f"{run.ok}/{n} ok  ({run.wall:.2f} s wall)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median shown)")
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
    n = args.addresses
    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-"))
    key, chain = server_chain(folder)
    targets = addresses(n, distinct=args.in_netns)
    server = start_server(kind, key, chain, args.in_netns, args.concurrency * 2)
    blackbox = Blackbox(folder, folder / "ca.pem") if blackbox_available() else None
    runs: dict[str, list[Run]] = {"bare": [], "blackbox": [], "relaycert": []}
    try:
        config = folder / "relaycert.toml"
        load_started = time.perf_counter()
        config_for(targets, server.port, args.concurrency, folder)
        load_seconds = time.perf_counter() - load_started
        # Warm up: the server's process pool (Postfix forks smtpd processes on demand).
        run_bare(targets[: args.concurrency * 4], server.port, args.concurrency)
        clients = {
            "bare": lambda: run_bare(targets, server.port, args.concurrency),
            "relaycert": lambda: run_relaycert(config),
        }
        if blackbox is not None:
            clients["blackbox"] = lambda: blackbox.run(targets, server.port, args.concurrency)
        order = list(clients)
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                runs[name].append(clients[name]())
    finally:
        if blackbox is not None:
            blackbox.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    where = "distinct, private netns" if args.in_netns else "all 127.0.0.1"
    print(
        f"server: {kind}; addresses: {n} ({where}); concurrency: {args.concurrency}; "
        f"medians of {args.rounds} interleaved rounds"
    )
    print(f"configuration write + load ({n} endpoints): {load_seconds:.2f} s")
    bare, relay = median_run(runs["bare"]), median_run(runs["relaycert"])
    print(line("bare asyncio loop", bare, n))
    box = median_run(runs["blackbox"]) if runs["blackbox"] else None
    if box is not None:
        print(line("blackbox_exporter", box, n))
    else:
        print("blackbox_exporter      not installed (apt install prometheus-blackbox-exporter)")
    print(line("relaycert (process)", relay, n) + " (CPU excludes start-up)")
    print(f"relaycert start-up: {relay.startup_cpu:.2f} s CPU; peak RSS {relay.peak_rss_mb:.1f} MB")
    print(f"ratio_bare: {bare.wall / relay.wall:.2f}")
    print(f"cpu_per_probe_vs_bare: {relay.cpu / max(bare.cpu, 1e-9):.2f}")
    everything_ok = all(r.ok == n for name in runs for r in runs[name])
    if box is None:
        return 0 if everything_ok else 1
    print(f"ratio_blackbox: {box.wall / relay.wall:.2f}")
    return 0 if everything_ok else 1


if __name__ == "__main__":
    sys.exit(main())
