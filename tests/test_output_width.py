"""``relaycert scan`` laid out for the width it has: at 80 columns on a terminal (a pty, as tmux
or an 80x24 xterm) and in a pipe (cron mail, ``> file``, ``| grep``), every finding's rule id
and its whole message (the evidence and the advice) reach the reader; a wide terminal keeps
the table with a certificate column that is not cut."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.fleet import running_fleet

ROOT = Path(__file__).parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """The demo fleet running, and what its scan finds (from the JSON output, the reference)."""
    with running_fleet(tmp_path_factory.mktemp("fleet")) as config:
        done = _scan(config, "--format", "json")
        results = json.loads(done)["results"]
        assert any(r["findings"] for r in results)
        yield config, results


def _scan(config: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "scan", "-c", str(config), "--no-store", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    return done.stdout


def _in_pty(config: Path, columns: int) -> str:
    """``relaycert scan`` on a pseudo-terminal ``columns`` wide, as a person sees it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "scan", "-c", str(config), "--no-store"],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**env, "TERM": "xterm-256color"},
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            assert ready, "the scan printed nothing for 120 s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        assert process.wait(timeout=60) == 2
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def _words(text: str) -> str:
    return " ".join(text.split())


def _assert_every_finding_whole(shown: str, results: list[dict[str, Any]]) -> None:
    flowing = _words(shown)
    for result in results:
        for finding in result["findings"]:
            assert finding["rule"] in shown
            assert _words(finding["message"]) in flowing, finding


def test_a_80_column_terminal_shows_every_finding_whole(fleet: tuple[Path, list[Any]]) -> None:
    config, results = fleet
    shown = _in_pty(config, 80)
    assert "┃" not in shown  # no table squeezed into 80 columns
    assert max(len(line.rstrip()) for line in shown.splitlines()) <= 80
    _assert_every_finding_whole(shown, results)
    # each endpoint is a block: its heading, then its certificate
    assert re.search(r"^smtps  served  smtps\.contoso\.com:\d+  127\.0\.0\.1", shown, re.M)
    assert "certificate: smtps.contoso.com (expired 10 days ago, 2 in chain)" in shown


def test_a_pipe_gets_plain_lines_with_one_finding_each(fleet: tuple[Path, list[Any]]) -> None:
    config, results = fleet
    shown = _scan(config)
    assert "\x1b" not in shown and "┃" not in shown and "│" not in shown
    lines = shown.splitlines()
    for result in results:
        for finding in result["findings"]:
            # grep for a rule id finds the whole finding on one line
            hits = [line for line in lines if f" {finding['rule']}: " in line]
            assert any(line.endswith(finding["message"]) for line in hits), finding


def test_a_wide_terminal_keeps_the_table_uncut(fleet: tuple[Path, list[Any]]) -> None:
    config, results = fleet
    shown = _in_pty(config, 200)
    assert "┃ Certificate" in shown
    assert "scanner.fabrikam.net" in shown and "expired 10 days ago, 2 in chain" in shown
    for result in results:
        for finding in result["findings"]:
            assert finding["rule"] in shown
