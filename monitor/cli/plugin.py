"""``check_relaycert``: relaycert as a monitoring plugin (Nagios, Icinga 2, Naemon, Checkmk
classic checks), with the options the plugin guidelines name.

    check_relaycert [--config FILE] [-e NAME]... [-t SECONDS] [-w DAYS] [-c DAYS]
                    [--from-store [--max-age DURATION]] [--no-store] [-V]

Two modes:

* **live** (the default): probe the endpoints now, like ``relaycert scan --format nagios``.  The
  whole check, the capture wait of an outbound check included, ends within ``-t`` (default
  50 s, under the 60 s after which Nagios and Icinga kill a check): the probe timeout and the
  capture wait are cut to fit, and at the limit the check prints an UNKNOWN line and exits.
* **--from-store**: answer from what the daemon stored, UNKNOWN for an address whose newest
  result is older than ``--max-age`` (default 15m).  This is how a plugin runs beside the
  daemon on one host: the daemon owns the capture port, so a live check of the client
  direction cannot listen.  A live check that finds the port taken answers that direction
  from the store the same way (fresh within ``--max-age``, else UNKNOWN) and stores nothing of
  its own failure.

Every outcome is one status line on stdout (``RELAYCERT UNKNOWN - ...`` for errors: bad
options, configuration, store), long output and performance data as in :mod:`.nagios`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import NoReturn

from monitor import __version__
from monitor.cli import answers, nagios
from monitor.cli.defaults import CONFIG_HELP, default_config
from monitor.clock import utcnow
from monitor.config.loader import Config, load
from monitor.config.sections import ExpiryConfig
from monitor.config.units import parse_duration
from monitor.errors import ConfigError, RelaycertError

DEFAULT_TIMEOUT = 50.0
DEFAULT_MAX_AGE = "15m"


class _Parser(argparse.ArgumentParser):
    """A usage error is an UNKNOWN status line on stdout (what Icinga shows) and exit 3."""

    def error(self, message: str) -> NoReturn:
        sys.stdout.write(nagios.unknown(f"{message} (check_relaycert --help)"))
        sys.exit(3)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="check_relaycert",
        description="Monitoring plugin: checks the relay certificates of the configured "
        "on-prem mail servers against the Microsoft 365 tenant and prints one status line, "
        "the findings and performance data (days left per address). Exit 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN.",
        epilog="Beside a running `relaycert run` on the same host use --from-store: the "
        "daemon owns the capture port, and its results are at most one interval old.",
    )
    p.add_argument("-V", "--version", action="version", version=f"check_relaycert {__version__}")
    p.add_argument(
        "--config",
        "-C",
        type=Path,
        help=CONFIG_HELP,
    )
    p.add_argument(
        "-e", "--endpoint", action="append", metavar="NAME", help="only this endpoint (repeatable)"
    )
    p.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"the whole check ends within this, UNKNOWN if cut (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "-w",
        "--warning",
        type=float,
        metavar="DAYS",
        help="warn when a certificate has fewer days left (default [expiry] warning_days); "
        "like cert.expiring, capped at [expiry] warning_fraction of its lifetime",
    )
    p.add_argument(
        "-c",
        "--critical",
        type=float,
        metavar="DAYS",
        help="critical below this many days left (default [expiry] critical_days), capped "
        "at [expiry] critical_fraction of its lifetime",
    )
    p.add_argument(
        "--from-store",
        action="store_true",
        help="answer from the daemon's stored results instead of probing",
    )
    p.add_argument(
        "--max-age",
        default=DEFAULT_MAX_AGE,
        metavar="DURATION",
        help=f"stored results older than this are UNKNOWN (default {DEFAULT_MAX_AGE})",
    )
    p.add_argument(
        "--no-store", action="store_true", help="live mode: do not write the results to the store"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if not 1 <= args.timeout <= 3600:
            raise ConfigError("-t/--timeout: give 1 to 3600 seconds")
        max_age = _max_age(args.max_age)
        _deadline(args.timeout)
        config = _thresholds(load(args.config or default_config()), args.warning, args.critical)
        from monitor.cli.scan import check_names

        check_names(config, args.endpoint)
        now = utcnow()
        if args.from_store:
            checked = answers.stored(config, args.endpoint, now, max_age)
        else:
            checked = answers.live(
                _fit(config, args.timeout), args.endpoint, now, not args.no_store, max_age
            )
        text, code = nagios.render(checked, config.expiry_for, now)
    except RelaycertError as exc:
        text, code = nagios.unknown(str(exc)), 3
    except Exception as exc:  # a plugin answers with a status line, always
        if os.environ.get("RELAYCERT_DEBUG"):
            raise
        text, code = nagios.unknown(f"internal error: {type(exc).__name__}: {exc}"), 3
    signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.write(text)
    return code


def _max_age(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--max-age: {exc}") from None


def _deadline(seconds: float) -> None:
    """At ``seconds``, whatever is still running: an UNKNOWN line and exit 3.  The probe
    timeout and the capture wait are cut to end before it (:func:`_fit`); this is the bound
    for the rest (a store that does not answer, a slow DNS server)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        os.write(1, nagios.unknown(f"no result within {seconds:g}s (-t/--timeout)").encode())
        os._exit(3)

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _thresholds(config: Config, warning: float | None, critical: float | None) -> Config:
    if warning is None and critical is None:
        return config
    values = config.expiry.model_dump()
    values |= {
        k: v for k, v in (("warning_days", warning), ("critical_days", critical)) if v is not None
    }
    try:
        expiry = ExpiryConfig.model_validate(values)
    except ValueError as exc:
        raise ConfigError(f"-w/-c: {_first_error(exc)}") from None
    changed = config.model_copy(update={"expiry": expiry})
    changed.__dict__.pop("_expiry_index", None)  # derived from [expiry]: derive it again
    return changed


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return str(found[0].get("msg", exc))
    return str(exc)


def _fit(config: Config, budget: float) -> Config:
    """The probe timeout, the CRL download and the capture wait cut so that a live check ends
    within ``budget`` seconds: probes (and a CRL) get at most a fifth of it, the capture wait
    and the linger after the first delivery (at most a quarter of it) what is left after two
    probe timeouts (the submission and its retry) and a margin."""
    probe = min(config.probe.timeout, timedelta(seconds=budget / 5))
    update: dict[str, object] = {"probe": config.probe.model_copy(update={"timeout": probe})}
    crl = min(config.revocation.timeout, probe)  # a CRL download fits beside the probe
    update["revocation"] = config.revocation.model_copy(update={"timeout": crl})
    if config.capture is not None:
        left = timedelta(seconds=budget * 0.9) - 2 * probe
        linger = min(config.capture.linger, max(left / 4, timedelta(0)))
        wait = max(min(config.capture.wait, left - linger), timedelta(seconds=1))
        update["capture"] = config.capture.model_copy(update={"wait": wait, "linger": linger})
    return config.model_copy(update=update)
