"""Benchmark: CPU time a command costs before it does anything useful, as a monitoring system
that runs one check per endpoint pays it.

    .venv/bin/python bench/startup.py

Runs each command several times in a fresh process and prints the median user+system CPU seconds
(children's rusage): ``--help``, ``--version`` (targets under 0.3 s), ``inspect`` of a PEM file and
a one-endpoint ``scan --format nagios`` against a loopback server (targets under 0.8 s).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clients import byte_compile  # noqa: E402

from monitor.demo import pki  # noqa: E402
from monitor.demo.servers import LoopbackSMTP  # noqa: E402

RUNS = 5


def cpu(argv: list[str]) -> float:
    """Median CPU seconds of ``python -m monitor argv`` over RUNS fresh processes."""
    samples = []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "monitor", *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(samples)


def main() -> int:
    byte_compile()
    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-startup-"))
    root = pki.make_ca("Bench Root")
    sub = pki.make_ca("Bench Issuing CA", root)
    leaf = pki.make_leaf(sub, ["mail1.contoso.com"])
    key, chain = pki.write_chain(folder, "leaf", leaf, sub)
    (folder / "root.pem").write_bytes(root.cert_pem())
    server = LoopbackSMTP("starttls", key, chain).start()
    config = folder / "relaycert.toml"
    config.write_text(
        '[tenant]\naccepted_domains = ["contoso.com"]\n'
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
        '[trust]\nuse_certifi = false\nextra_ca_files = ["root.pem"]\n'
        f'[[endpoints]]\nname = "mail1"\nhost = "mail1.contoso.com"\nport = {server.port}\n'
        'connector = "relay"\naddresses = ["127.0.0.1"]\n'
    )
    try:
        figures = {
            "--help": (cpu(["--help"]), 0.3),
            "--version": (cpu(["--version"]), 0.3),
            "inspect FILE": (cpu(["inspect", str(chain)]), 0.8),
            "scan one endpoint (nagios)": (
                cpu(["scan", "--config", str(config), "--format", "nagios", "--no-store"]),
                0.8,
            ),
        }
    finally:
        server.stop()
    for name, (seconds, target) in figures.items():
        verdict = "ok" if seconds < target else "OVER"
        print(f"{name:32} {seconds:.3f} s CPU (target < {target} s) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
