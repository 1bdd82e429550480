"""The demo's renewal: mail2's expiring certificate renewed against a local pebble (a dry run:
issued and judged, not deployed)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from checks.certinfo import clip
from monitor import aio
from monitor.config.loader import load
from monitor.demo import pebble as demo_pebble
from monitor.renewal.runner import renew
from monitor.store.engine import Store

DEMO_RENEWAL = """
[[renewals]]
name = "mail2-renewal"
endpoints = ["mail2"]
directory = "{directory}"
# The demo's dry run orders from the same local pebble (a real CA has a separate staging one).
staging_directory = "{directory}"
ca_file = "{ca_file}"
email = "postmaster@contoso.com"
names = ["mail2.contoso.com"]

[renewals.solver]
type = "http01"
listen = "127.0.0.1:{http_port}"

[renewals.deploy]
dir = "{deploy}"
"""


def demo_renewal(config_path: Path, console: Console) -> None:
    """Renew the demo's expiring certificate against a local pebble (a dry run: issued and
    judged, not deployed), or say how to enable it."""
    if not demo_pebble.installed():
        console.print(
            "ACME renewal: install Debian's pebble (apt-get install pebble) and run "
            "the demo again to see mail2's certificate renewed against a local CA."
        )
        return
    with demo_pebble.Pebble() as ca:
        folder = config_path.parent
        (folder / "pebble-root.pem").write_bytes(ca.root_pem())
        text = config_path.read_text(encoding="utf-8").replace(
            'extra_ca_files = ["demo-root-ca.pem"]',
            'extra_ca_files = ["demo-root-ca.pem", "pebble-root.pem"]',
        )
        text += DEMO_RENEWAL.format(
            directory=ca.directory,
            ca_file=ca.ca_file,
            http_port=ca.http_port,
            deploy=folder / "renewed",
        )
        config_path.write_text(text, encoding="utf-8")
        config = load(config_path)
        store = Store.open(config.database_url())
        try:
            outcome = aio.run(renew(config, store, config.renewals[0], dry_run=True))
        finally:
            store.close()
    console.print(
        f"ACME renewal against a local pebble (dry run): {outcome.name}: "
        f"{outcome.outcome}: {clip(outcome.detail, 300)}"
    )
