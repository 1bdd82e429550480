"""``relaycert inspect``: judge a certificate file (PEM, DER, PKCS#12) with the same rules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.clock import utcnow
from monitor.errors import ConfigError
from monitor.files import read_limited

if TYPE_CHECKING:
    from checks.base import Policy

NAME = "inspect"
HELP = "judge a certificate file (PEM, DER, PKCS#12)"
NEEDS_CONFIG = False  # --config is optional: without it, public roots and no connector


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path)
    parser.add_argument("--config", "-c", type=Path, help="take connector and trust from it")
    parser.add_argument("--connector", metavar="NAME", help="connector to judge against")
    parser.add_argument("--host", help="also check that the certificate covers this host")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="PKCS#12 password from $VAR")
    secret.add_argument(
        "--password-file", type=Path, metavar="FILE", help="PKCS#12 password from FILE"
    )


def _password(args: argparse.Namespace) -> bytes | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise ConfigError(
                f"--password-env: environment variable {args.password_env} is not set"
            )
        return value.encode()
    if args.password_file:
        path: Path = args.password_file
        try:
            return read_limited(path).rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"--password-file: cannot read {args.password_file}: {exc.strerror}"
            ) from exc
    return None


def _policy(args: argparse.Namespace, now: datetime) -> Policy:
    """The connector and trust to judge against: from --config, or public roots only."""
    from checks.base import Policy
    from monitor.probe.trust import public_anchors

    if args.config is None:
        if args.connector is not None:
            raise ConfigError("--connector needs --config, which defines the connectors")
        return Policy(now, trust=public_anchors())
    from monitor.config.loader import load  # the configuration models, only when given
    from monitor.probe.trust import trust_anchors

    config = load(args.config)
    connector = None
    if args.connector is not None:
        found = config.connector(args.connector)
        if found is None:
            known = ", ".join(c.name for c in config.connectors) or "none defined"
            raise ConfigError(
                f"{args.config}: no connector named '{args.connector}' (known: {known})"
            )
        connector = found.to_check()
    elif len(config.connectors) == 1:
        connector = config.connectors[0].to_check()
    return Policy(
        now,
        config.tenant.accepted_domains,
        connector,
        config.expiry.to_check(),
        trust_anchors(config.resolved(config.trust), config.source),
    )


def run(args: argparse.Namespace) -> int:
    from checks.base import Observation, ProbeStatus, worst
    from checks.registry import evaluate
    from monitor.cli.scanjson import record_json
    from monitor.probe.certfile import read_chain
    from monitor.results import ProbeResult, ProbeTarget, ScanRecord

    now = utcnow()
    chain = read_chain(args.path, _password(args))
    policy = _policy(args, now)
    obs = Observation(ProbeStatus.FILE, chain, host=args.host, port=None)
    findings = evaluate(obs, policy)
    severity = worst(f.severity for f in findings)
    code = severity.exit_code if severity else 0
    target = ProbeTarget(str(args.path), args.host or "-", 0, "", "file", "", 0)
    record = ScanRecord(
        ProbeResult(target, now, ProbeStatus.FILE),
        chain,
        tuple(findings),
        "file",
        policy.connector.name if policy.connector else None,
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(record_json(record, now), indent=2) + "\n")
    else:
        from monitor.cli.output import console, print_file  # rich: only for the table

        print_file(str(args.path), chain, record, now, console())
    return code
