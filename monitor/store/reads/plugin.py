"""What ``check_relaycert --from-store`` answers from: each address's newest stored result, as
the daemon measured it, with every finding that still counts and when it was measured.

During a miss (unreachable, nothing arrived) the last measured certificate and its findings
count beside the miss's own finding, as in ``relaycert status``: a miss never reads better than
what was known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from checks.base import Direction
from monitor.store import queries
from monitor.store.engine import Store


@dataclass(frozen=True)
class StoredAddress:
    endpoint: str
    address: str
    direction: str
    status: str
    # (rule, severity, message), the miss's own and the last known ones
    findings: tuple[tuple[str, str, str], ...]
    measured_at: datetime  # when the newest probe (or the check of a client) ran
    # the certificate that counts (the last known one during a miss)
    not_before: datetime | None
    not_after: datetime | None
    leaf: x509.Certificate | None
    last_seen: datetime | None  # during a miss: when that certificate was measured
    contract: str | None


def stored_addresses(store: Store, endpoint_names: set[str] | None = None) -> list[StoredAddress]:
    """Every stored address of the named endpoints (all when ``None``), by endpoint, direction
    and address."""
    with store.reading("reading the stored results") as session:
        endpoints = {e.id: e for e in queries.endpoints_by_name(session).values()}
        stored = queries.current(
            session,
            (
                o
                for o in queries.latest_observations(session)
                if endpoint_names is None or endpoints[o.endpoint_id].name in endpoint_names
            ),
        )
        latest, known, findings = stored.latest, stored.known, stored.findings
        certificates = queries.certificates(session, stored.leaves())
    rows: list[StoredAddress] = []
    for obs in latest:
        key = (obs.endpoint_id, obs.address, obs.direction)
        last = known.get(key) if obs.status in queries.MISSES else None
        counted = findings.get(obs.id or 0, []) + (findings.get(last.id or 0, []) if last else [])
        leaf = certificates.get((last or obs).leaf_sha256 or "")
        rows.append(
            StoredAddress(
                endpoints[obs.endpoint_id].name,
                obs.address,
                obs.direction,
                obs.status,
                tuple((f.rule, f.severity, f.message) for f in counted),
                obs.last_seen_at or obs.started_at,
                leaf.not_valid_before_utc if leaf else None,
                leaf.not_valid_after_utc if leaf else None,
                leaf,
                (last.last_seen_at or last.started_at) if last else None,
                queries.stored_contract((last or obs).session)
                if obs.direction == Direction.FROM_EXO.value
                else None,
            )
        )
    rows.sort(key=lambda r: (r.endpoint, r.direction, r.address))
    return rows
