"""Scheduled reports: build, archive (keeping the newest ``keep`` per format) and e-mail."""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from checks.certinfo import clip
from monitor.config.loader import Config
from monitor.errors import ConfigError
from monitor.files import write_atomic
from monitor.reports.build import build
from monitor.reports.model import Report
from monitor.reports.render import render
from monitor.store.engine import Store
from notifications.base import Mailer, Notifier

PREFIX = "relaycert-report-"


def archive(config: Config, report: Report, formats: tuple[str, ...]) -> list[Path]:
    folder = config.resolve_path(config.reports.archive_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{config.source}: reports.archive_dir: cannot create {folder}: {exc.strerror}"
        ) from exc
    stamp = report.generated_at.strftime("%Y%m%dT%H%M%SZ")
    written = []
    for fmt in formats:
        path = folder / f"{PREFIX}{stamp}.{fmt}"
        write_atomic(path, render(report, fmt).encode("utf-8"))
        written.append(path)
        old = sorted(folder.glob(f"{PREFIX}*.{fmt}"))[: -config.reports.keep]
        for stale in old:
            stale.unlink(missing_ok=True)
    return written


def message(
    config: Config, report: Report, sender: str, recipients: tuple[str, ...]
) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = clip(
        f"[relaycert] Compliance report {report.tenant} "
        f"{report.generated_at:%Y-%m-%d}: {report.verdict}",
        200,
    )
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(usegmt=True)
    mail["Auto-Submitted"] = "auto-generated"
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items())
    mail.set_content(
        f"relaycert compliance report for {report.tenant}\n"
        f"Period: {report.period_start:%Y-%m-%d} to {report.period_end:%Y-%m-%d}\n"
        f"Verdict: {report.verdict} ({counts})\n\n"
        "The full report is the HTML part of this message; the CSV is attached.\n"
    )
    mail.add_alternative(render(report, "html"), subtype="html")
    mail.add_attachment(
        render(report, "csv").encode(),
        maintype="text",
        subtype="csv",
        filename=f"{PREFIX}{report.generated_at:%Y%m%d}.csv",
    )
    return mail


async def publish(
    config: Config, store: Store, channels: dict[str, Notifier], now: datetime
) -> list[Path]:
    """Build the scheduled report from the store, archive it and e-mail it if configured."""
    report = await asyncio.to_thread(build, config, store, config.reports.period, now)
    paths = await asyncio.to_thread(archive, config, report, config.reports.formats)
    name = config.reports.email_channel
    if name is not None:
        channel = channels.get(name)
        if not isinstance(channel, Mailer):
            raise ConfigError(
                f"{config.source}: reports.email_channel: '{name}' is not an e-mail channel"
            )
        recipients = config.reports.recipients or channel.recipients
        await channel.send_message(message(config, report, channel.sender, recipients))
    return paths
