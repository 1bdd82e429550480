"""A database failure anywhere (status, the outbox, a report, accept, prune) is a one-line
error naming what failed, never an "internal error" or a traceback, and loses nothing stored."""

from __future__ import annotations

import sqlite3
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
