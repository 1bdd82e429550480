"""``relaycert observe``: what Exchange Online answered to the relays' real mail, read once from
their Postfix logs and classified (docs/observed.md): like pflogsumm for a whole log, but for the
deliveries to Exchange Online only, by outcome class.

The sources are the configured ``[endpoints.observed]`` logs (each with its rotated siblings,
oldest first, ``.gz`` included) and, with ``queue = true``, what is stuck in the instance's
queue now (``postqueue -j``), or the files named on the command line, which need no
configuration: their instances are shown by their ``syslog_name``.  The exit code follows the
plugin convention: 2 when any delivery was refused for good or its session failed
(:data:`CRITICAL`), 1 when some were deferred or refused for a reason to look at
(:data:`WARNING`), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.config.loader import Config

NAME = "observe"
HELP = "what Exchange Online answered to the relays' real mail, from their Postfix logs"
NEEDS_CONFIG = False

CRITICAL = frozenset(
    {
        "tenant_attribution",
        "out_of_date_blocked",
        "tenant_limit",
        "unregistered_domain",
        "direct_send",
        "auth_disabled",
        "disconnect_after_tls",
        "tls_failed",
    }
)
WARNING = frozenset({"out_of_date_throttled", "transient", "other"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "logfiles",
        nargs="*",
        type=Path,
        metavar="LOGFILE",
        help="Postfix log files to read instead of the configured sources (plain or .gz)",
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        help="configuration file: its [endpoints.observed] sources and [observed] settings "
        "(default without LOGFILE: $RELAYCERT_CONFIG, else /etc/relaycert/relaycert.toml)",
    )
    parser.add_argument(
        "--since", metavar="DURATION", help="only deliveries of this last period, e.g. 24h or 7d"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from monitor.cli.defaults import default_config
    from monitor.config.loader import load
    from monitor.config.units import parse_duration
    from monitor.observed.reading import queues, read_sources

    config = None
    if args.config is not None or not args.logfiles:
        config = load(args.config or default_config())
    since = None
    if args.since:
        try:
            since = datetime.now(UTC) - parse_duration(args.since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
    sources = _sources(config, args.logfiles)
    settings = config.observed if config is not None else None
    key = _key(config)  # once: the log's and the queue's hashes must compare
    summary, tls_logging, names = read_sources(
        sources,
        tuple(settings.smart_hosts) if settings else (),
        key,
        settings.timezone if settings else "local",
        since,
    )
    document = summary.to_json(tls_logging)
    for group in document["endpoints"]:
        group["endpoint"] = names.get(group["instance"])
    document["queues"] = queues(_queued(config), key) if not args.logfiles else []
    if args.format == "json":
        document["generated_at"] = datetime.now(UTC).isoformat()
        document["since"] = since.isoformat() if since else None
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        _print(document)
    return _exit_code(document)


def _sources(config: Config | None, given: list[Path]) -> dict[Path, dict[str, list[str]]]:
    """log file -> instance -> the endpoints it is (none for files named on the command line)."""
    if given:
        for path in given:
            if not path.exists():
                raise ConfigError(f"{path}: no such file")
        return {path: {} for path in given}
    assert config is not None
    sources: dict[Path, dict[str, list[str]]] = {}
    for endpoint in config.endpoints:
        if endpoint.observed is not None:
            log = config.resolve_path(endpoint.observed.log)
            names = sources.setdefault(log, {}).setdefault(endpoint.observed.syslog_name, [])
            names.append(endpoint.name)
    if not sources:
        raise ConfigError(
            f"{config.source}: no endpoint has an [endpoints.observed] section naming its "
            "Postfix log (see docs/observed.md), and no LOGFILE was given"
        )
    return sources


def _queued(config: Config | None) -> list[tuple[str, Path | None]]:
    """(endpoint, its Postfix config directory) of each endpoint with ``queue = true``."""
    if config is None:
        return []
    wanted = []
    for endpoint in config.endpoints:
        source = endpoint.observed
        if source is not None and source.queue:
            folder = config.resolve_path(source.postfix_config) if source.postfix_config else None
            wanted.append((endpoint.name, folder))
    return wanted


def _key(config: Config | None) -> bytes:
    """The address hash key: ``[observed] address_key_*``, else one for this run only."""
    import secrets

    from monitor.secrets import read_secret

    settings = config.observed if config is not None else None
    keyed = settings is not None and (settings.address_key_env or settings.address_key_file)
    if config is not None and settings is not None and keyed:
        file = settings.address_key_file
        path = config.resolve_path(file) if file else None
        secret = read_secret("[observed] address_key", settings.address_key_env, path)
        if secret is not None:
            return secret.encode()
    return secrets.token_bytes(32)  # hashes compare within this run only


def _exit_code(document: dict[str, Any]) -> int:
    seen = {kind for group in document["endpoints"] for kind in group["outcomes"]}
    seen |= {kind for queue in document["queues"] for kind in queue["outcomes"]}
    if seen & CRITICAL:
        return 2
    return 1 if seen & WARNING else 0


def _when(value: str | None) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M}" if value else "-"


def _print(document: dict[str, Any]) -> None:
    from checks.certinfo import clip

    out = sys.stdout
    if not document["endpoints"]:
        out.write(
            f"No delivery to Exchange Online in {document['lines']} lines (next hops "
            "*.mail.protection.outlook.com, smtp.office365.com and [observed] smart_hosts).\n"
        )
    for group in document["endpoints"]:
        who = group["endpoint"] or group["instance"]
        instance = f" ({group['instance']})" if group["endpoint"] else ""
        out.write(f"{clip(who, 80)}{instance} -> {clip(group['next_hop'], 100)}\n")
        for kind, tally in group["outcomes"].items():
            span = f"{_when(tally['first_seen'])} .. {_when(tally['last_seen'])} UTC"
            out.write(f"  {kind:<22} {tally['count']:>8}  {span}\n")
            if kind != "accepted":
                out.write(f"    {clip(tally['sample_reply'], 300)}\n")
                out.write(f"    queue ids: {', '.join(tally['sample_queue_ids'])}\n")
    for queue in document["queues"]:
        classes = ", ".join(f"{k} {n}" for k, n in queue["outcomes"].items()) or "none tried"
        out.write(
            f"{clip(queue['endpoint'], 80)}: {queue['recipients']} recipient(s) in the queue now "
            f"({classes}; {queue['not_tried_yet']} not tried yet)\n"
        )
        if queue["sample_queue_ids"]:
            out.write(f"    queue ids: {', '.join(queue['sample_queue_ids'])}\n")
    for hint in document["hints"]:
        out.write(f"note: {hint}\n")
    skipped = f", {document['lines_skipped']} skipped" if document["lines_skipped"] else ""
    out.write(f"{document['lines']} lines read{skipped}.\n")
