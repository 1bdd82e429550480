"""A database failure anywhere (status, the outbox, a report, accept, prune) is a one-line
error naming what failed, never an "internal error" or a traceback, and loses nothing stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.alerts.outbox import Outbox
from monitor.cli.app import main
from monitor.config.loader import load
from monitor.errors import StoreError
from monitor.store.engine import Store
from tests.conftest import endpoint_toml


@pytest.fixture
def scanned(smtp_server, write_chain, good_leaf, intermediate, config_file, capsys) -> Path:  # type: ignore[no-untyped-def]
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    path: Path = config_file(endpoint_toml("mail1", server.port))
    assert main(["scan", "--config", str(path), "--format", "json"]) == 0
    capsys.readouterr()
    return path


def break_table(config: Path, table: str) -> None:
    """Damage the store under relaycert: the schema is at head, but a table is gone."""
    db = config.parent / "relaycert.db"
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA foreign_keys=OFF")
        connection.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize(
    ("argv", "table", "what"),
    [
        (["status"], "finding", "reading the status failed"),
        (["status", "--format", "json"], "renewal", "reading renewal attempts failed"),
        (["report", "--format", "json"], "probe_day", "reading the report data failed"),
        (["accept", "mail1"], "baseline", "accepting the certificates of mail1 failed"),
        (["prune", "--older-than", "1d"], "probe_day", "pruning old history failed"),
    ],
)
def test_database_error_is_one_line(
    scanned: Path, capsys: pytest.CaptureFixture[str], argv: list[str], table: str, what: str
) -> None:
    break_table(scanned, table)
    code = main([*argv, "--config", str(scanned)])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and err.startswith("relaycert: error: " + what), err
    assert "internal error" not in err and "Traceback" not in err
    assert "no such table" in err


async def test_outbox_database_error_is_a_store_error(scanned: Path) -> None:
    break_table(scanned, "outbox")
    config = load(scanned)
    store = Store.open(config.database_url())
    try:
        with pytest.raises(StoreError, match="claiming outbox messages failed"):
            await Outbox(store, {}).deliver()
    finally:
        store.close()


def test_scan_stops_at_once_when_the_store_cannot_be_opened(
    config_file, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """The store opens in a thread while the probes run; when it cannot be opened, the scan
    stops with that error at once instead of first waiting for every probe."""
    import socket
    import time

    with socket.socket() as silent:  # accepts (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with socket.socket() as closed:  # a port nothing listens on: the database
            closed.bind(("127.0.0.1", 0))
            db_port = closed.getsockname()[1]
        path = config_file(
            endpoint_toml("mail1", silent.getsockname()[1]),
            db=f"postgresql+psycopg://relaycert@127.0.0.1:{db_port}/relaycert",
        )
        started = time.monotonic()
        code = main(["scan", "--config", str(path), "--format", "json"])
        elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith("relaycert: error: "), err
    assert str(db_port) in err and "Traceback" not in err
    assert elapsed < 2.5  # the probe alone would wait 3 s for a greeting


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a disk that really fills up."""
    import os
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the disk-full test must run there")
        pytest.skip("mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the file that holds the space."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


async def test_results_probed_while_the_disk_is_full_are_stored_when_it_is_not(
    small_disk: Path,
    smtp_server,  # type: ignore[no-untyped-def]
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf,  # type: ignore[no-untyped-def]
    intermediate,  # type: ignore[no-untyped-def]
    config_file,  # type: ignore[no-untyped-def]
) -> None:
    """The daemon keeps probing while the SQLite disk is full; what it probed meanwhile is
    kept in memory and stored, at its own instant, once the disk has room: no run lost, and
    nothing already stored lost (#25)."""
    from datetime import UTC, datetime, timedelta

    from monitor.pipeline.options import ScanOptions
    from monitor.pipeline.scan import Scanner

    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    url = f"sqlite:///{small_disk / 'relaycert.db'}"
    config = load(config_file(endpoint_toml("mail1", server.port), db=url))
    store = Store.open(url)
    scanner = Scanner(config, store, ScanOptions(daemon=True))
    endpoint = config.endpoints[0]
    now = datetime.now(UTC)
    first = await scanner.probe([endpoint])
    await scanner.judge_and_store_many([(first, now)])
    before = store.counts()
    filler = fill(small_disk)
    for minute in (1, 2):  # two runs while the disk is full: kept, not raised
        results = await scanner.probe([endpoint])
        # a changed result each time, so each is a row of its own once stored
        results[0].error = f"run {minute}"
        records = await scanner.judge_and_store_many([(results, now + timedelta(minutes=minute))])
        assert len(records) == 1 and len(records[0]) == 1
    assert scanner.unstored.count == 2
    assert store.counts() == before  # nothing already stored was lost
    filler.unlink()
    last = await scanner.probe([endpoint])
    await scanner.judge_and_store_many([(last, now + timedelta(minutes=3))])
    assert scanner.unstored.count == 0
    from sqlalchemy import select

    from monitor.store.models import ObservationRow

    with store.reading("test") as session:
        rows = session.scalars(select(ObservationRow).order_by(ObservationRow.started_at)).all()
        errors = [row.error for row in rows]
    assert errors[1:3] == ["run 1", "run 2"]  # both runs of the full disk, in their order
    store.close()


def test_the_daemon_keeps_unstored_results_and_a_reload_keeps_them_too(
    config_file,  # type: ignore[no-untyped-def]
) -> None:
    """``relaycert run`` holds results the store cannot take (a one-shot scan does not: its
    store error ends it), and a configuration reload hands them to the new scanner."""
    from datetime import UTC, datetime

    from monitor.pipeline.scan import Scanner
    from monitor.service.generation import Generation

    path = config_file(endpoint_toml("mail1", 25))
    config = load(path)
    store = Store.open(config.database_url())
    first = Generation(config, store)
    assert first.scanner.unstored is not None
    first.scanner.unstored.keep([([], datetime.now(UTC))])
    second = Generation(load(path), store, previous=first)
    assert second.scanner.unstored is first.scanner.unstored
    assert Scanner(config, store).unstored is None
    store.close()
