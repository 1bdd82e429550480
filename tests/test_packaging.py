"""The package builds without setuptools warnings and carries what an installed relaycert
needs at run time: the report template, the migration template, the shipped examples and the
license."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# What a verbose build prints that is not about the project (this machine's pip settings).
NOISE = re.compile(r"byte-compiling is disabled|Location '.*' is ignored")


def test_wheel_builds_without_warnings_and_ships_its_data(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    warnings = [
        line
        for line in output.splitlines()
        if re.search(r"warning|deprecat", line, re.IGNORECASE) and not NOISE.search(line)
    ]
    assert warnings == []
    (wheel,) = tmp_path.glob("relaycert-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "monitor/reports/templates/report.html.j2",
        "monitor/store/migrations/script.py.mako",
        "monitor/examples/relaycert.example.toml",
        "monitor/examples/relaycert.service",
        "monitor/examples/hooks/postfix-reload",
    ):
        assert expected in names
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_systemd_units_verify(tmp_path: Path) -> None:
    """The shipped units load in systemd without warnings (the daemon, the low-port drop-in,
    the Postfix reload path and service)."""
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing; .ci/run must install systemd")
        pytest.skip("systemd-analyze is not installed")
    examples = ROOT / "monitor" / "examples"
    relaycert = shutil.which("relaycert") or sys.executable
    for name in ("relaycert.service", "relaycert-postfix-reload.path"):
        (tmp_path / name).write_text(
            (examples / name).read_text().replace("/opt/relaycert/bin/relaycert", relaycert)
        )
    service = (examples / "relaycert-postfix-reload.service").read_text()
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    (tmp_path / "relaycert-postfix-reload.service").write_text(
        service.replace("/usr/sbin/postfix", postfix)
    )
    dropin = tmp_path / "relaycert.service.d"
    dropin.mkdir()
    shutil.copy(examples / "relaycert.service.d" / "bind-low-ports.conf", dropin)
    result = subprocess.run(
        [
            analyze,
            "verify",
            *(
                str(tmp_path / n)
                for n in (
                    "relaycert.service",
                    "relaycert-postfix-reload.path",
                    "relaycert-postfix-reload.service",
                )
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr, result.stderr
    unit = (examples / "relaycert.service").read_text()
    assert "StateDirectory=relaycert" in unit and "ReadWritePaths=/var/lib/relaycert" in unit
    config = (examples / "relaycert.example.toml").read_text()
    assert "/var/lib/relaycert/relaycert.db" in config  # the paths the unit makes writable


def test_prometheus_examples_use_only_exported_metrics() -> None:
    """The shipped alert rules and dashboard name metrics /metrics really exports."""
    exported = set(
        re.findall(r'"(relaycert_[a-z_]+)"', (ROOT / "monitor/service/metrics.py").read_text())
    )
    assert "relaycert_cert_not_after_timestamp_seconds" in exported
    for name in ("prometheus-rules.yml", "grafana-dashboard.json"):
        used = set(re.findall(r"relaycert_[a-z_]+", (ROOT / "monitor/examples" / name).read_text()))
        assert used and used <= exported, (name, used - exported)
