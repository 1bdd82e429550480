"""One renewal, end to end: decide, issue, judge, deploy, run hooks, verify it is served, record.

A failed renewal never removes the working certificate (nothing is written before the gate
passes, and files are replaced atomically), is recorded, alerts through the outbox, and is
retried later with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select
from sqlmodel import col

from checks.base import Observation, Policy, ProbeStatus, Severity
from checks.certinfo import all_names, dns_sans, fingerprint
from checks.drift import baseline_of
from monitor.alerts.tracking import enqueue, set_baseline
from monitor.config.loader import Config
from monitor.errors import RenewalError
from monitor.pipeline.scan import targets
from monitor.probe.smtp import probe_many
from monitor.probe.trust import trust_anchors
from monitor.renewal.acme_flow import AcmeSession
from monitor.renewal.deploy import gate, run_hooks, write_files
from monitor.renewal.settings import RenewalSettings
from monitor.renewal.solvers import make_solver
from monitor.store.engine import Store
from monitor.store.models import (
    CertificateRow,
    EndpointRow,
    FindingRow,
    ObservationRow,
    RenewalRow,
)
from notifications.base import Notification
from notifications.settings import read_secret

URGENT_RULES = {"cert.expired", "cert.untrusted", "connector.name_not_covered"}
FAILED = {"gate_refused", "hook_failed", "not_served", "failed"}


@dataclass(frozen=True)
class Outcome:
    name: str
    outcome: str
    detail: str
    old_sha256: str | None = None
    new_sha256: str | None = None
    next_check: datetime | None = None  # the CA's Retry-After for renewal information (ARI)


@dataclass(frozen=True)
class Served:
    leaf: x509.Certificate | None
    urgent: list[str]  # rule ids that make renewal urgent


def served(store: Store, endpoint_names: tuple[str, ...]) -> Served:
    """What the endpoints were last seen serving (from the store)."""
    with store.session() as session:
        ids = list(
            session.scalars(
                select(EndpointRow.id).where(  # type: ignore[call-overload]
                    col(EndpointRow.name).in_(endpoint_names)
                )
            )
        )
        newest = (
            select(func.max(ObservationRow.id))
            .where(col(ObservationRow.endpoint_id).in_(ids))
            .group_by(col(ObservationRow.endpoint_id), col(ObservationRow.address))
        )
        rows = list(
            session.scalars(select(ObservationRow).where(col(ObservationRow.id).in_(newest)))
        )
        urgent = sorted(
            {
                f.rule
                for f in session.scalars(
                    select(FindingRow).where(
                        col(FindingRow.observation_id).in_([r.id for r in rows]),
                        col(FindingRow.rule).in_(URGENT_RULES),
                        col(FindingRow.severity) == "critical",
                    )
                )
            }
        )
        leaf = None
        shas = [r.leaf_sha256 for r in rows if r.leaf_sha256]
        if shas:
            der = session.scalar(
                select(col(CertificateRow.der)).where(col(CertificateRow.sha256) == shas[0])
            )
            leaf = x509.load_der_x509_certificate(der) if der else None
    return Served(leaf, urgent)


def _backoff(store: Store, name: str, now: datetime) -> datetime | None:
    """After consecutive failures, the earliest next attempt (10 min doubling, at most 12 h)."""
    with store.session() as session:
        recent = list(
            session.scalars(
                select(RenewalRow)
                .where(col(RenewalRow.name) == name)
                .order_by(col(RenewalRow.id).desc())
                .limit(8)
            )
        )
    failures = 0
    for row in recent:
        if row.outcome not in FAILED:
            break
        failures += 1
    if not failures or recent[0].finished_at is None:
        return None
    wait = min(timedelta(minutes=10) * (1 << (failures - 1)), timedelta(hours=12))
    last: datetime = recent[0].finished_at
    return last + wait


def _policies(config: Config, settings: RenewalSettings, now: datetime) -> list[Policy]:
    anchors = trust_anchors(config)
    connectors = {e.connector for e in config.endpoints if e.name in settings.endpoints}
    policies = []
    for name in connectors:
        connector = config.connector(name)
        policies.append(
            Policy(
                now,
                config.tenant.accepted_domains,
                connector.to_check() if connector else None,
                config.expiry.to_check(),
                anchors,
            )
        )
    return policies


def _record(store: Store, name: str, started: datetime, outcome: Outcome, order: str | None) -> int:
    with store.session() as session, session.begin():
        row = RenewalRow(
            name=name,
            started_at=started,
            finished_at=datetime.now(UTC),
            order_url=order,
            old_sha256=outcome.old_sha256,
            new_sha256=outcome.new_sha256,
            outcome=outcome.outcome,
            detail=outcome.detail[:2000],
        )
        session.add(row)
        session.flush()
        return row.id or 0


def _alert(
    config: Config,
    store: Store,
    row_id: int,
    settings: RenewalSettings,
    outcome: Outcome,
    kind: str = "opened",
) -> None:
    """Enqueue a critical message about a failed renewal (``kind="resolved"``: the recovery
    after earlier failures) for every routed channel."""
    now = datetime.now(UTC)
    first = config.endpoint(settings.endpoints[0])
    with store.session() as session, session.begin():
        for channel in config.channels:
            if not channel.routes("critical", first.connector if first else None):
                continue
            note = Notification(
                kind=kind,
                severity=Severity.CRITICAL.value,
                rule=f"renewal.{outcome.outcome}",
                title="Certificate renewal failed" if kind == "opened" else "Certificate renewed",
                endpoint=", ".join(settings.endpoints),
                host=first.host if first else "-",
                port=first.port if first else 0,
                address="",
                connector=first.connector if first else None,
                message=f"renewal '{settings.name}': {outcome.detail}",
                at=now.isoformat(),
                key=f"relaycert:renewal:{row_id}:{channel.name}",
                fingerprint=outcome.new_sha256,
            )
            enqueue(session, note, channel.name, now)


def accept_renewed(
    store: Store, settings: RenewalSettings, chain: tuple[x509.Certificate, ...], now: datetime
) -> None:
    """A renewal relaycert deployed and verified becomes every address's baseline: routine
    renewals do not page anyone (the renewal itself is recorded and reported)."""
    candidate = baseline_of(Observation(ProbeStatus.OK, chain))
    if candidate is None:
        return
    with store.session() as session, session.begin():
        rows = session.execute(
            select(col(ObservationRow.endpoint_id), col(ObservationRow.address))
            .join(EndpointRow, col(EndpointRow.id) == col(ObservationRow.endpoint_id))
            .where(col(EndpointRow.name).in_(settings.endpoints))
            .distinct()
        ).all()
        for endpoint_id, address in rows:
            set_baseline(session, endpoint_id, address, candidate, "renewal", now)


async def verify_served(config: Config, settings: RenewalSettings, sha256: str) -> list[str]:
    """Re-probe every address until all serve ``sha256``; the addresses that still do not."""
    endpoints = [e for e in config.endpoints if e.name in settings.endpoints]
    deadline = asyncio.get_running_loop().time() + settings.verify_timeout.total_seconds()
    while True:
        found, failed = await targets(config, endpoints)
        results = failed + await probe_many(found, config.probe.concurrency)
        stale = []
        for result in results:
            leaf = x509.load_der_x509_certificate(result.chain_der[0]) if result.chain_der else None
            if leaf is None or fingerprint(leaf) != sha256:
                stale.append(f"{result.target.endpoint} {result.target.address or '?'}")
        if not stale or asyncio.get_running_loop().time() > deadline:
            return stale
        await asyncio.sleep(1)


async def renew(
    config: Config,
    store: Store,
    settings: RenewalSettings,
    *,
    force: bool = False,
    dry_run: bool = False,
    now_fn: Callable[[], datetime] | None = None,
) -> Outcome:
    now = (now_fn or (lambda: datetime.now(UTC)))()
    index = config.renewals.index(settings)
    settings = config.resolved(settings)  # relative paths are relative to the config file
    where = config.renewal_where(index)
    current = await asyncio.to_thread(served, store, settings.endpoints)
    # After failures: the earliest next attempt (a later success then sends a recovery message).
    not_before = await asyncio.to_thread(_backoff, store, settings.name, now)
    previous_failed = not_before is not None
    old = fingerprint(current.leaf) if current.leaf else None
    names = list(settings.names) or (all_names(current.leaf) if current.leaf else [])
    if not names:
        raise RenewalError(
            f"{where}.names: no names given and no certificate seen on "
            f"{', '.join(settings.endpoints)} yet; list the names"
        )
    if not force and not_before is not None and now < not_before:
        return Outcome(
            settings.name,
            "skipped",
            f"retrying after {not_before:%Y-%m-%d %H:%M} UTC (backoff after failures)",
            old,
        )
    eab = read_secret(
        f"{where}.eab_hmac", settings.eab_hmac_env, settings.eab_hmac_file, required=False
    )
    state_dir = settings.state_dir / settings.name
    started = now
    order_url: str | None = None
    try:
        session = await asyncio.to_thread(AcmeSession, settings, state_dir, eab)
        reason, next_check = (
            ("forced", None)
            if force
            else await asyncio.to_thread(_due, session, current, settings, now)
        )
        if reason is None:
            return Outcome(settings.name, "skipped", "not due yet", old, next_check=next_check)
        solver = await asyncio.to_thread(make_solver, settings.solver, where)
        try:
            issued = await asyncio.to_thread(session.issue, names, solver)
        finally:
            await asyncio.to_thread(solver.cleanup)
        order_url = issued.order_url
        chain = tuple(x509.load_pem_x509_certificates(issued.fullchain_pem.encode()))
        new = fingerprint(chain[0])
        # Judged at issuance time: the new certificate's notBefore is later than ``now``.
        judged_at = (now_fn or (lambda: datetime.now(UTC)))()
        blocking = gate(
            chain, _policies(config, settings, judged_at), settings.min_lifetime, judged_at
        )
        if blocking:
            outcome = Outcome(
                settings.name,
                "gate_refused",
                "; ".join(f"{f.rule}: {f.message}" for f in blocking),
                old,
                new,
            )
        elif dry_run:
            outcome = Outcome(
                settings.name,
                "dry_run",
                f"issued for {', '.join(sorted(dns_sans(chain[0])))} and judged ({reason}); "
                "not deployed",
                old,
                new,
            )
        else:
            pfx = read_secret(
                f"{where}.deploy.pfx_password",
                settings.deploy.pfx_password_env,
                settings.deploy.pfx_password_file,
                required=False,
            )
            deployed = await asyncio.to_thread(
                write_files, settings.deploy, issued.key_pem, issued.fullchain_pem, pfx
            )
            try:
                await asyncio.to_thread(
                    run_hooks,
                    settings.deploy,
                    deployed,
                    settings.name,
                    names,
                    list(settings.endpoints),
                )
            except RenewalError as exc:
                outcome = Outcome(settings.name, "hook_failed", str(exc), old, new)
            else:
                stale = await verify_served(config, settings, new)
                outcome = (
                    Outcome(
                        settings.name,
                        "not_served",
                        "still served the old certificate: " + ", ".join(stale),
                        old,
                        new,
                    )
                    if stale
                    else Outcome(
                        settings.name,
                        "verified",
                        f"{reason}; deployed and served by every address",
                        old,
                        new,
                    )
                )
                if not stale:
                    await asyncio.to_thread(accept_renewed, store, settings, chain, judged_at)
    except RenewalError as exc:
        outcome = Outcome(settings.name, "failed", str(exc), old)
    row_id = await asyncio.to_thread(_record, store, settings.name, started, outcome, order_url)
    if outcome.outcome in FAILED:
        await asyncio.to_thread(_alert, config, store, row_id, settings, outcome)
    elif outcome.outcome == "verified" and previous_failed:
        await asyncio.to_thread(_alert, config, store, row_id, settings, outcome, "resolved")
    return outcome


def _due(
    session: AcmeSession, current: Served, settings: RenewalSettings, now: datetime
) -> tuple[str | None, datetime | None]:
    """Why to renew now (``None`` when not due), and when the CA wants to be asked again."""
    if current.urgent:
        return "the served certificate fails " + ", ".join(current.urgent), None
    leaf = current.leaf
    if leaf is None:
        return "no certificate is served yet", None
    when, next_check = session.renewal_time(leaf.public_bytes(Encoding.PEM))
    if when is not None:
        reason = f"inside the CA's renewal window (ARI, from {when:%Y-%m-%d %H:%M} UTC)"
        return (reason if now >= when else None), next_check
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    renew_at = leaf.not_valid_after_utc - lifetime * settings.renew_fraction
    share = f"less than {settings.renew_fraction:.0%} of the lifetime left"
    return (share if now >= renew_at else None), None
