"""``relaycert scan``: probe every endpoint (or the named ones) once, judge, store, print."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.clock import utcnow
from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.results import ScanRecord
    from monitor.store.engine import Store

NAME = "scan"
HELP = "probe every endpoint once, judge, store and print"
NEEDS_CONFIG = True

GC_THRESHOLD = 20_000  # allocations between two young-generation collections during a scan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "nagios"), default="table")
    parser.add_argument(
        "--endpoint", action="append", metavar="NAME", help="only this endpoint (repeatable)"
    )
    parser.add_argument("--no-store", action="store_true", help="do not write to the store")
    parser.add_argument(
        "--problems-only",
        action="store_true",
        help="table: only addresses with a warning or worse (the summary counts all)",
    )
    parser.add_argument(
        "--legacy-tls",
        action="store_true",
        help="also check whether each server still accepts TLS 1.0/1.1 (one more handshake "
        "per address; the daemon does it once per [probe] legacy_tls_every)",
    )


def scan_and_print(
    config: Config,
    names: Sequence[str] | None,
    fmt: str,
    keep: bool,
    legacy_tls: bool = False,
    problems_only: bool = False,
) -> int:
    from monitor.results import exit_code

    check_names(config, names)
    now = utcnow()
    texts = None
    if fmt == "json":  # results encoded as they are judged, while the other probes run
        from monitor.cli.scanjson import ResultTexts

        texts = ResultTexts(now)
    with shown_progress(fmt == "table") as progress:
        judged = texts.add if texts is not None else None
        records = collect(config, names, now, keep, legacy_tls, progress, judged)
    code = exit_code(records)
    if fmt == "nagios":
        from monitor.cli import nagios

        text, code = nagios.render(nagios.from_records(records), config.expiry_for, now)
        sys.stdout.write(text)
        return code
    if fmt == "json":
        from monitor.cli.scanjson import write_json

        write_json(records, now, code, sys.stdout, texts)
        sys.stdout.write("\n")
    else:
        from monitor.cli.output import console, print_table  # rich: only for the table

        out = console()
        print_table(records, now, out, problems_only=problems_only)
        out.print(summary(records, code))
    return code


def check_names(config: Config, names: Sequence[str] | None) -> None:
    unknown = [n for n in names or () if n not in {e.name for e in config.endpoints}]
    if unknown:
        known = ", ".join(e.name for e in config.endpoints)
        raise ConfigError(
            f"{config.source}: no endpoint named {', '.join(unknown)} (known: {known})"
        )


def collect(
    config: Config,
    names: Sequence[str] | None,
    now: datetime,
    keep: bool,
    legacy_tls: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    judged: Callable[[Sequence[ScanRecord]], None] | None = None,
) -> list[ScanRecord]:
    """Probe and judge the named endpoints (all when none are named) once; with ``keep``,
    store what was measured."""
    from concurrent.futures import ThreadPoolExecutor

    from monitor import aio
    from monitor.pipeline.oneshot import scan
    from monitor.probe.workers import ProbePool, wanted

    # Modules and configuration live as long as the process: out of the collector's way, so
    # its passes over a large scan's results do not also walk them every time.  A scan makes
    # thousands of objects per probe that live until the end (results, chains, findings): at
    # the default threshold (700) the collector ran every few probes, 0.12 ms per probe in all.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)
    # Probe workers are forked first, while this process has no event loop and no thread.
    selected = len(names) if names else len(config.endpoints)
    workers = wanted(selected, config.probe.workers)
    pool = ProbePool(workers) if workers else None
    # The database layer costs ~0.5 s to import and open: only when storing, and in a thread
    # while the probes run (a failure to open still stops the scan at once).
    opener = ThreadPoolExecutor(1, thread_name_prefix="relaycert-store") if keep else None
    opening = opener.submit(_open_store, config.database_url()) if opener else None
    try:
        return aio.run(scan(config, None, names, now, legacy_tls, progress, opening, pool, judged))
    finally:
        if pool is not None:
            pool.close()
        if opener is not None and opening is not None:
            opener.shutdown(wait=True)
            if opening.exception() is None:
                opening.result().close()


def _open_store(url: str) -> Store:
    from monitor.store.engine import Store

    return Store.open(url)


@contextmanager
def shown_progress(wanted: bool) -> Iterator[Callable[[int, int, int], None] | None]:
    """A progress line on stderr while scanning, only when stderr is a terminal (a pipe or a
    log gets the table and the summary only)."""
    if not wanted or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("endpoints, {task.fields[failed]} with problems"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=None, failed=0)

        def update(done: int, total: int, failed: int) -> None:
            bar.update(task, completed=done, total=total, failed=failed)

        yield update


def summary(records: Sequence[ScanRecord], code: int) -> str:
    """One line after the table: how many addresses, the worst, counts by severity."""
    from checks.base import Severity, worst

    counts = {s: 0 for s in Severity}
    for record in records:
        for finding in record.findings:
            counts[finding.severity] += 1
    top = worst(f.severity for r in records for f in r.findings)
    tally = ", ".join(
        f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda i: -i[0].rank) if n
    )
    return (
        f"{len(records)} address(es) scanned; worst: {top.value if top else 'none'}"
        + (f"; findings: {tally}" if tally else "")
        + f"; exit code {code}"
    )


def run(args: argparse.Namespace) -> int:
    from monitor.config.loader import load

    return scan_and_print(
        load(args.config),
        args.endpoint,
        args.format,
        not args.no_store,
        args.legacy_tls,
        args.problems_only,
    )
