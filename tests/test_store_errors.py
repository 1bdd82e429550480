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
