"""The benchmarks stay runnable: ``bench/scan.py`` on a few addresses runs every client (the
bare loop, the bare loop with relaycert's dialogue, blackbox_exporter, relaycert as a whole
process) and ends with the ratio."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postfix import ensure_installed

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_scan_bench_runs_every_client_and_prints_the_ratio_last() -> None:
    missing = ensure_installed() or (
        None if shutil.which("prometheus-blackbox-exporter") else "prometheus-blackbox-exporter"
    )
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: .ci/run must install it")
        pytest.skip(str(missing))
    run = subprocess.run(
        [sys.executable, "bench/scan.py", "--addresses", "40", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    labels = ("bare asyncio loop ", "bare, EHLO again", "blackbox_exporter", "relaycert (process)")
    for label in labels:
        (line,) = [x for x in lines if x.startswith(label)]
        assert "40/40 ok" in line, line
    # (On 40 addresses the figure may be anything, start-up dwarfs the probes: it is there.)
    (dialogue,) = [x for x in lines if x.startswith("cpu_per_probe_vs_bare_same_dialogue: ")]
    float(dialogue.split()[-1])
    assert lines[-1].startswith("ratio_blackbox: ") and float(lines[-1].split()[-1]) > 0


def test_soak_short_loses_nothing_under_faults() -> None:
    """``bench/soak.py --short``: two instances on PostgreSQL for a minute through a kill -9, a
    PostgreSQL restart (as root) and a failing webhook sink; the targets are the long run's:
    no probe run lost to a database error, no alert lost (by key), duplicates within the bound
    (#25)."""
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "probe runs lost to database errors: 0;" in run.stdout, output
    assert ", 0 lost;" in run.stdout and "targets: met" in run.stdout, output
    if os.geteuid() == 0 and shutil.which("pg_ctlcluster"):
        assert "PostgreSQL restart: restarted in" in run.stdout, output


def test_observe_bench_runs_beside_pflogsumm(tmp_path: Path) -> None:
    """``bench/observe.py`` on a small generated log: relaycert in one and two processes and
    pflogsumm on the same file, each rate printed with its ratio."""
    if shutil.which("pflogsumm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pflogsumm: .ci/run must install it")
        pytest.skip("Debian's pflogsumm is not installed")
    run = subprocess.run(
        [
            sys.executable,
            "bench/observe.py",
            "--lines",
            "20000",
            "--rounds",
            "1",
            "--follow-seconds",
            "0",
            "--log",
            str(tmp_path / "mail.log"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    medians = [x for x in run.stdout.splitlines() if x.startswith("median, relaycert with ")]
    assert len(medians) == 2 and all("x (target >= 3)" in m for m in medians), run.stdout
    assert "peak RSS of any relaycert process" in run.stdout
