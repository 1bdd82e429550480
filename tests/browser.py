"""Debian's headless Chromium for the page tests: a screenshot (with the console's errors), and
a count of the elements that overflow a page of a given width."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# Measures, after load, every element whose box sticks out of the page or of its parent
# (tables sit in .scroll containers, which may scroll), and writes the count to the title.
MEASURE = """<script>
addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll('body *')].filter(e => {
    if (e.closest('.scroll')) return false;
    const r = e.getBoundingClientRect();
    const clipped = e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0;
    return r.right > width + 1 || clipped && getComputedStyle(e).overflowX === 'visible';
  }).map(e => e.tagName + '.' + e.className);
  document.title = 'OVERFLOW:' + out.length + ':' + out.slice(0, 5).join(',');
});
</script>"""


def flags(tmp_path: Path, browser: str) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def need_chromium() -> str:
    """Debian's chromium, or the test is skipped (failed in CI, whose .ci/run installs it)."""
    import os

    import pytest

    browser = chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return browser


def screenshot(browser: str, tmp_path: Path, url: str, width: int, shot: Path) -> list[str]:
    """Take ``shot`` of ``url`` at ``width`` px; the console lines Chromium logged."""
    run = subprocess.run(
        [*flags(tmp_path, browser), f"--screenshot={shot}", f"--window-size={width},2400", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000, run.stderr[-2000:]
    return [line for line in run.stderr.splitlines() if "CONSOLE" in line]


def overflowing(browser: str, tmp_path: Path, html: str, width: int, css: str = "") -> str:
    """``OVERFLOW:<count>:<first few>`` for ``html`` at ``width`` px: a local copy with the
    stylesheet inline and a measuring script (the served pages allow no script at all)."""
    page = tmp_path / f"measure-{width}.html"
    copy = html
    if css:
        copy = copy.replace('<link rel="stylesheet" href="/status.css">', f"<style>{css}</style>")
    page.write_text(copy.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [*flags(tmp_path, browser), f"--window-size={width},2400", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title, dom.stderr[-2000:]
    return title.group(1)
