"""The daemon's live status page, ``/`` on its HTTP listener, as a browser sees it: Debian's
headless Chromium at 1280 and 390 px wide, the verdicts shown, no element overflowing the page,
no console error (a blocked script or style would log one); a hostile certificate field (HTML,
a script, a ``javascript:`` URL, control characters) rendered as inert text under a strict
Content-Security-Policy; loopback only by default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP, free_port
from tests.browser import need_chromium, overflowing, screenshot
from tests.conftest import endpoint_toml

HOSTILE = '<script>alert(1)</script><a href="javascript:alert(2)">x</a>\x1b[31m'


async def test_the_status_page_in_a_browser(
    tmp_path: Path,
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> None:
    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    browser = need_chromium()
    good = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    hostile = pki.make_leaf(intermediate, ["x.fabrikam.net"], cn=HOSTILE)
    bad = smtp_server("starttls", *write_chain(hostile, intermediate))
    port = free_port()
    config_path = config_file(
        endpoint_toml("good", good.port)
        + endpoint_toml("bad", bad.port)
        + endpoint_toml("gone", free_port()),
        extra=(
            '[daemon]\ninterval = "1h"\njitter = "0s"\nlog_level = "error"\n'
            f'metrics_listen = "127.0.0.1:{port}"\n'
        ),
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(0)))
    url = f"http://127.0.0.1:{port}/"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100):
                await asyncio.sleep(0.2)
                try:
                    page = await client.get(url)
                except httpx.HTTPError:
                    continue
                stored = 'data-label="Endpoint">bad<br>', 'data-label="Endpoint">gone<br>'
                if page.status_code == 200 and all(s in page.text for s in stored):
                    break  # every probe is stored
            assert page.status_code == 200, page.text
            csp = page.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "script-src" not in csp
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            html = page.text
            assert 'id="verdict"' in html and "NON-COMPLIANT" in html
            assert "relay through Exchange Online (client certificate)" in html
            assert "delivery from Exchange Online" in html or "Connectors" in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert "<script" not in html.lower() and 'href="javascript:' not in html
            assert "\x1b" not in html
            assert (await client.get(f"http://127.0.0.1:{port}/status.css")).status_code == 200
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert metrics.status_code == 200  # the same listener
            css = (await client.get(f"http://127.0.0.1:{port}/status.css")).text
            for width in (1280, 390):
                shot = tmp_path / f"status-{width}.png"
                console = await asyncio.to_thread(screenshot, browser, tmp_path, url, width, shot)
                assert console == [], console  # a blocked script or style would log here
                found = await asyncio.to_thread(overflowing, browser, tmp_path, html, width, css)
                assert found.startswith("OVERFLOW:0:"), (width, found)
    finally:
        daemon.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_the_status_page_can_be_switched_off(
    config_file: Callable[..., Path],
) -> None:
    from monitor.config.loader import load
    from monitor.service.listener import MetricsServer
    from monitor.store.engine import Store

    config_path = config_file(
        endpoint_toml("gone", free_port()), extra='[daemon]\nstatus_page = "off"\n'
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    server = MetricsServer(store, lambda: None, lambda: True, lambda: config)
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(f"http://127.0.0.1:{server.port()}/")
            assert page.status_code == 403 and "status_page" in page.text
    finally:
        await server.close()
        store.close()
