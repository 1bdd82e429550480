"""``make demo`` (``relaycert demo``) end to end, the way a new user runs it: the scan of the
loopback fleet, one daemon cycle with its captured alerts, the ACME dry run against pebble and
the report; and ``relaycert init`` from the shipped example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo import pebble

ROOT = Path(__file__).parent.parent


def test_demo_runs_every_step(tmp_path: Path) -> None:
    if not pebble.installed():
        if os.environ.get("CI") == "true":
            pytest.fail("pebble is not installed; .ci/run must install Debian's pebble")
        pytest.skip("Debian's pebble is not installed (apt-get install pebble)")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "demo", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "One daemon cycle" in out
    assert "ACME renewal against a local pebble (dry run): mail2-renewal: dry_run: issued" in out
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alerts and all(a["subject"].startswith("[relaycert]") for a in alerts)
    assert any("mail2.contoso.com" in a["subject"] for a in alerts)
    report = (tmp_path / "relaycert-report.html").read_text()
    assert report.startswith("<!DOCTYPE html>") and "mail2.contoso.com" in report
    assert (tmp_path / "relaycert.db").stat().st_size > 0


def test_init_writes_the_shipped_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "relaycert.toml"
    assert main(["init", "--output", str(target)]) == 0
    assert target.read_text() == (ROOT / "config" / "relaycert.example.toml").read_text()
    load(target)  # the example is a valid configuration
    out = capsys.readouterr().out
    assert "relaycert.service" in out and "hooks" in out
    assert main(["init", "--output", str(target)]) == 3  # never overwrites
    assert "exists" in capsys.readouterr().err
