"""The package builds without setuptools warnings and carries what an installed relaycert
needs at run time: the report template, the migration template, the shipped examples and the
license."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

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
