"""The store on SQLite and PostgreSQL: migrations, deduplication, UTC times, atomic writes."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlmodel import Session, SQLModel

from checks.base import Finding, ProbeStatus, Severity
from monitor.demo import pki
from monitor.errors import StoreError
from monitor.results import ProbeResult, ProbeTarget, ScanRecord
from monitor.store import writes
from monitor.store.engine import Store
from monitor.store.models import CertificateRow, ObservationRow


def record(
    leaf: pki.Issued, sub: pki.Issued, address: str = "127.0.0.1", when: datetime | None = None
) -> ScanRecord:
    target = ProbeTarget("mail1", "mail1.contoso.com", 25, address, "starttls", "x", 5)
    result = ProbeResult(target, when or datetime.now(UTC), ProbeStatus.OK, tls_version="TLSv1.3")
    result.timings["total"] = 12.5
    findings = (Finding("cert.expiring", Severity.WARNING, "expires in 20 days"),)
    return ScanRecord(result, (leaf.cert, sub.cert), findings, "starttls", "relay")


def test_migrations_match_models(store_url: str) -> None:
    store = Store.open(store_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    Store.open(store_url).close()  # opening again is a no-op migration
    store.close()


def test_scan_is_stored_with_deduplicated_certificates(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    store = Store.open(store_url)
    writes.record(
        store,
        [
            record(good_leaf, intermediate, "127.0.0.1"),
            record(good_leaf, intermediate, "127.0.0.2"),
        ],
    )
    writes.record(store, [record(good_leaf, intermediate, "127.0.0.1")])
    # The third probe saw what the first did: stored as a repeat, not a new row.
    assert store.counts() == {"endpoint": 1, "certificate": 2, "observation": 2, "finding": 2}
    with Session(store.engine) as session:
        obs = session.scalars(select(ObservationRow).order_by(ObservationRow.id)).first()  # type: ignore[arg-type]
        assert obs is not None and obs.worst == "warning" and len(obs.chain) == 2
        assert obs.repeats == 2 and obs.last_seen_at is not None
        cert = session.scalars(
            select(CertificateRow).where(CertificateRow.sha256 == obs.chain[0])
        ).one()  # type: ignore[arg-type]
        assert cert.not_after == good_leaf.cert.not_valid_after_utc
    store.close()


def test_each_observation_keeps_its_own_findings(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    """Observations are inserted in multi-row statements and their ids matched back by
    address; the same address twice in one batch (listed twice) still gets its own row."""
    from monitor.store.models import FindingRow

    store = Store.open(store_url)
    addresses = [f"127.0.0.{i}" for i in range(1, 40)] + ["127.0.0.1"]
    records = [
        replace(
            record(good_leaf, intermediate, address),
            findings=(Finding("cert.expiring", Severity.WARNING, f"finding {i}"),),
        )
        for i, address in enumerate(addresses)
    ]
    writes.record(store, records)
    with Session(store.engine) as session:
        rows = session.execute(
            select(ObservationRow.address, FindingRow.message)  # type: ignore[call-overload]
            .join(FindingRow, FindingRow.observation_id == ObservationRow.id)
            .order_by(ObservationRow.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        (item.result.target.address, f"finding {i}") for i, item in enumerate(records)
    ]
    store.close()


def test_times_are_tz_aware_utc(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    store = Store.open(store_url)
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 28, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    writes.record(store, [record(good_leaf, intermediate, when=local)])
    with Session(store.engine) as session:
        started = session.scalars(select(ObservationRow.started_at)).one()  # type: ignore[call-overload]
    assert started.tzinfo is not None and started.utcoffset() == timedelta(0)
    assert started == local
    store.close()


def test_failed_write_stores_nothing_and_loses_nothing(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    store = Store.open(store_url)
    writes.record(store, [record(good_leaf, intermediate)])
    before = store.counts()
    other = pki.make_leaf(intermediate, ["mail9.contoso.com"])
    bad = record(other, intermediate, when=datetime(2026, 1, 1))  # naive: refused  # noqa: DTZ001
    with pytest.raises(StoreError, match="nothing of this run was stored"):
        writes.record(store, [record(good_leaf, intermediate), bad])
    assert store.counts() == before
    store.close()


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql+psycopg://relaycert:hunter2@127.0.0.1:1/relaycert")
    message = str(info.value)
    assert "cannot open the store at postgresql+psycopg://relaycert:***@127.0.0.1:1" in message
    assert "hunter2" not in message


def test_observations_are_stored_on_change_with_a_heartbeat(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    store = Store.open(store_url, heartbeat=timedelta(hours=24))
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for hour in range(30):  # hourly probes seeing the same thing
        writes.record(store, [record(good_leaf, intermediate, when=t0 + timedelta(hours=hour))])
    counts = store.counts()
    assert counts["observation"] == 2  # one row, and a heartbeat row after 24 hours
    other = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    writes.record(store, [record(other, intermediate, when=t0 + timedelta(hours=31))])
    assert store.counts()["observation"] == 3  # a change is always a new row
    from monitor.store.models import ProbeDayRow

    with Session(store.engine) as session:
        days = {
            d.day.isoformat(): (d.attempts, d.successes)
            for d in session.scalars(select(ProbeDayRow))
        }
    assert days == {"2026-11-01": (24, 24), "2026-11-02": (7, 7)}
    store.close()


def test_prune_keeps_the_newest_observation_of_every_address(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    from monitor.store.retention import prune

    store = Store.open(store_url)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    other = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    for day, leaf in enumerate([good_leaf, other, good_leaf]):  # three changes: three rows
        writes.record(store, [record(leaf, intermediate, when=t0 + timedelta(days=day))])
    # alone on its address:
    writes.record(store, [record(other, intermediate, "127.0.0.2", when=t0)])
    assert store.counts()["observation"] == 4
    cutoff = t0 + timedelta(days=10)
    dry = prune(store, cutoff, dry_run=True)
    assert (dry.observations, dry.findings) == (2, 2) and store.counts()["observation"] == 4
    done = prune(store, cutoff)
    assert (done.observations, done.findings, done.probe_days) == (2, 2, 4)
    counts = store.counts()
    assert counts["observation"] == 2 and counts["finding"] == 2  # newest of each address
    assert counts["certificate"] == 3  # certificates are kept
    store.close()


def test_prune_forgets_instances_and_claims_not_heard_of_since(store_url: str) -> None:
    """Instances (a row per process start) and claims of work nobody runs any more (a removed
    endpoint) go with the history; the live ones stay."""
    from monitor.store import cluster
    from monitor.store.models import InstanceRow
    from monitor.store.retention import prune

    store = Store.open(store_url)
    now = datetime.now(UTC)
    old = now - timedelta(days=100)
    for name, beat in (("gone", old), ("live", now)):
        cluster.register(
            store,
            InstanceRow(
                id=name, name=name, version="1", host="h", pid=1, started_at=old, heartbeat_at=beat
            ),
        )
    assert cluster.claim(store, "endpoint:removed", "gone", old, old + timedelta(hours=1))
    assert cluster.claim(store, "endpoint:kept", "live", now, now + timedelta(hours=1))
    assert not cluster.claim(store, "endpoint:kept", "live", now, now)  # not due again yet
    done = prune(store, now - timedelta(days=30))
    assert (done.instances, done.claims) == (1, 1)
    assert [r.name for r in cluster.instances(store, old - timedelta(days=1))] == ["live"]
    assert not cluster.claim(store, "endpoint:kept", "live", now, now)  # the claim survived
    store.close()


def test_upgrade_keeps_baselines_as_served_and_downgrade_works(store_url: str) -> None:
    """A store written by the previous release (revision 0004) keeps its baselines, alerts and
    observations; they become the served direction."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine, text

    from monitor.store.engine import MIGRATIONS

    def alembic(conn: object, target: str, down: bool = False) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, target)

    engine = create_engine(store_url)
    with engine.begin() as conn:
        alembic(conn, "0004")
        conn.execute(
            text(
                "INSERT INTO endpoint (id, name, host, port, mode, created_at) "
                "VALUES (1, 'mail1', 'mail1.contoso.com', 25, 'starttls', :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            text(
                "INSERT INTO baseline (endpoint_id, address, sha256, names, issuer, spki_sha256, "
                "accepted_at, accepted_by) VALUES (1, '127.0.0.1', 'ab', '[]', 'CN=I', 'cd', "
                ":now, 'manual')"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    store = Store.open(store_url)  # upgrades to head
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT address, direction, accepted_by FROM baseline")).all()
    assert [tuple(r) for r in rows] == [("127.0.0.1", "from_exchange_online", "manual")]
    with store.engine.begin() as conn:
        alembic(conn, "0004", down=True)
        assert conn.execute(text("SELECT sha256 FROM baseline")).scalar_one() == "ab"
    store.close()


def test_head_constant_is_alembics_head() -> None:
    """Store.open skips Alembic when the store is at HEAD: HEAD must be the newest migration, or
    a store would never get a new one."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from monitor.store.engine import HEAD, MIGRATIONS

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


@pytest.mark.parametrize("same_endpoint", [True, False], ids=["same-endpoint", "other-endpoint"])
def test_instances_storing_one_certificate_at_once_lose_nothing(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued, same_endpoint: bool
) -> None:
    """Two instances first see one wildcard certificate at the same moment: the second's insert
    of the certificate (and of the endpoint row) meets the first's uncommitted one.  Both runs
    are stored; neither is lost to a unique violation."""
    first, second = Store.open(store_url), Store.open(store_url)
    other = record(good_leaf, intermediate, "127.0.0.2")
    if not same_endpoint:
        target = replace(other.result.target, endpoint="mail2")
        other = replace(other, result=replace(other.result, target=target))
    _race(first, second, (record(good_leaf, intermediate, "127.0.0.1"), other), _nothing)
    endpoints = 1 if same_endpoint else 2
    assert second.counts() == {
        "endpoint": endpoints,
        "certificate": 2,
        "observation": 2,
        "finding": 2,
    }
    first.close()
    second.close()


def _race(
    first: Store, second: Store, records: tuple[ScanRecord, ScanRecord], hook: writes.Hook
) -> None:
    """``first`` stores ``records[0]`` and holds its transaction open (after ``hook``) while
    ``second`` stores ``records[1]`` with the same hook: two instances at one moment."""
    import threading

    written, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold(session: Session, ids: dict[str, int]) -> None:
        hook(session, ids)
        written.set()  # tracked, not committed: the second instance now races it
        started.wait(5)
        time.sleep(0.5)

    def run_first() -> None:
        try:
            writes.record(first, [records[0]], hold)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_first)
    thread.start()
    assert written.wait(5)
    started.set()
    try:
        writes.record(second, [records[1]], hook)
    finally:
        thread.join(10)
    assert errors == []


def _nothing(session: Session, ids: dict[str, int]) -> None:
    pass


def _tracking() -> Any:
    from monitor.alerts.policy import Tracking
    from monitor.alerts.settings import AlertSettings
    from notifications.settings import WebhookSettings

    sink = WebhookSettings(name="sink", type="webhook", url_env="RELAYCERT_TEST_UNUSED")
    return Tracking(alerts=AlertSettings(persist=1), channels=(sink,))


def test_instances_judging_one_endpoint_at_once_open_one_alert(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    """Two instances (a daemon and a ``relaycert scan``, or two daemons while claims move)
    judge one address at once, both with a new critical finding: one alert opens and one
    message goes out, not two of each (the second instance reads the first's alert)."""
    from checks.base import Direction
    from monitor.alerts.tracking import track
    from monitor.store.models import AlertRow, OutboxRow

    first, second = Store.open(store_url), Store.open(store_url)
    tracking, now = _tracking(), datetime.now(UTC)
    broken = (Finding("outbound.no_client_certificate", Severity.CRITICAL, "no certificate"),)

    def client_check(when: datetime) -> ScanRecord:  # the client direction: no daily counter
        known = record(good_leaf, intermediate, when=when)
        target = replace(known.result.target, direction=Direction.TO_EXO, mode="outbound")
        return replace(known, result=replace(known.result, target=target), findings=broken)

    writes.record(first, [record(good_leaf, intermediate)])  # endpoint and certificate known
    runs = (client_check(now), client_check(now + timedelta(seconds=1)))

    def hook(session: Session, ids: dict[str, int]) -> None:
        track(session, ids, list(runs[:1]), tracking, now)

    _race(first, second, (runs[0], runs[1]), hook)
    with second.reading("test") as session:
        alerts = session.scalars(select(AlertRow)).all()
        messages = session.scalars(select(OutboxRow)).all()
    assert [(a.rule, a.status) for a in alerts] == [("outbound.no_client_certificate", "open")]
    assert [m.kind for m in messages] == ["opened"]
    first.close()
    second.close()


def test_instances_setting_the_first_baseline_at_once_lose_nothing(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    """The first certificate of an address becomes its baseline; two instances seeing it
    first at the same moment both store their run (the first baseline stands)."""
    from checks.base import Observation
    from checks.drift import baseline_of
    from monitor.alerts.tracking import track
    from monitor.store.models import BaselineRow

    first, second = Store.open(store_url), Store.open(store_url)
    writes.record(first, [record(good_leaf, intermediate)])
    candidate = baseline_of(Observation(ProbeStatus.OK, (good_leaf.cert, intermediate.cert)))
    now = datetime.now(UTC)
    runs = tuple(
        replace(
            record(good_leaf, intermediate, when=now + timedelta(seconds=s)), candidate=candidate
        )
        for s in (1, 2)
    )

    def hook(session: Session, ids: dict[str, int]) -> None:
        track(session, ids, list(runs[:1]), _tracking(), now)

    _race(first, second, (runs[0], runs[1]), hook)
    with second.reading("test") as session:
        assert len(session.scalars(select(BaselineRow)).all()) == 1
        # three probes with one signature: one observation row that saw all three
        assert [o.repeats for o in session.scalars(select(ObservationRow))] == [3]
    first.close()
    second.close()


def test_a_transient_database_error_is_retried_not_a_lost_run(
    store_url: str, good_leaf: pki.Issued, intermediate: pki.Issued
) -> None:
    """A serialisation failure (PostgreSQL) or a write lock held past the wait (SQLite) fails
    one attempt; the run is stored by the next attempt, once, not lost."""
    from sqlalchemy import create_engine, text

    store = Store.open(store_url)
    attempts: list[int] = []

    def fail_once(session: Session, ids: dict[str, int]) -> None:
        attempts.append(len(attempts))
        if len(attempts) > 1:
            return
        if store.dialect == "postgresql":
            session.execute(
                text(
                    "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' "
                    "USING ERRCODE = 'serialization_failure'; END $$"
                )
            )
        else:  # another writer that gives up at once: the real "database is locked"
            impatient = create_engine(store_url, connect_args={"timeout": 0})
            try:
                with impatient.connect() as connection:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                impatient.dispose()

    writes.record(store, [record(good_leaf, intermediate)], fail_once)
    assert attempts == [0, 1]
    assert store.counts() == {"endpoint": 1, "certificate": 2, "observation": 1, "finding": 1}
    store.close()


def test_a_refused_connection_is_transient_a_broken_query_is_not(store_url: str) -> None:
    """A database restarting refuses connections for a few seconds: worth another try.  A
    statement the database rejects is not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.demo.ports import free_port
    from monitor.store.engine import transient

    def error_of(url: str, statement: str, **connect_args: Any) -> SQLAlchemyError:
        engine = create_engine(url, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        except SQLAlchemyError as exc:
            return exc
        finally:
            engine.dispose()
        raise AssertionError("no error")

    assert not transient(error_of(store_url, "SELECT * FROM no_such_table"))
    if store_url.startswith("postgresql"):
        closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
        assert transient(error_of(closed, "SELECT 1", connect_timeout=2))


def test_while_the_database_is_down_a_write_is_tried_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart is ridden out by the tries; an outage is not waited for at every write: once
    a write has run out of tries, the next is tried once (and the first that works again
    restores the tries)."""
    from sqlalchemy import create_engine, text

    from monitor.demo.ports import free_port
    from monitor.store import engine as engine_module

    if not store_url.startswith("postgresql"):
        pytest.skip("a refused connection is PostgreSQL's (SQLite has no server to be down)")
    monkeypatch.setattr(engine_module, "FIRST_PAUSE", 0.001)
    store = Store.open(store_url)
    working = store.engine
    store.engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
        connect_args={"connect_timeout": 2},
    )

    def write() -> None:
        store.retrying("writing", lambda session: session.execute(text("SELECT 1")))

    def retries() -> int:
        return sum(r.getMessage() == "store.retry" for r in caplog.records)

    with caplog.at_level("WARNING", logger="relaycert.store"):
        with pytest.raises(StoreError):
            write()
        assert retries() == engine_module.ATTEMPTS - 1
        with pytest.raises(StoreError):
            write()
        assert retries() == engine_module.ATTEMPTS - 1  # no more tries while it is down
        store.engine.dispose()
        store.engine = working
        write()
        assert store.failing is False
    store.close()
