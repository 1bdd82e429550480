"""One scan record as the row values it is stored with: its signature (what makes two probes
of one address the same, so a repeat only touches the newest row), the observation's columns,
and the session with the delivery contract a served certificate was judged by."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from checks.base import worst
from monitor.results import ScanRecord
from monitor.store.queries import LatestRow


def signature(record: ScanRecord, prints: list[str]) -> str:
    """What makes two probes of one address "the same" for storage."""
    result = record.result
    canonical = json.dumps(
        [
            result.status.value,
            result.failed_step,
            result.error,
            result.tls_version,
            prints,
            sorted((f.rule, f.severity.value, f.message) for f in record.findings),
            (result.session or {}).get("digest"),  # the tenant snapshot, when there is one
            (_recorded(record) or {}).get("contract"),  # what a served one was judged by
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def row(record: ScanRecord, endpoint_id: int, prints: list[str], sign: str) -> dict[str, Any]:
    result = record.result
    severity = worst(f.severity for f in record.findings)
    return {
        "endpoint_id": endpoint_id,
        "address": result.target.address,
        "direction": result.target.direction.value,
        "started_at": result.started_at,
        "last_seen_at": result.started_at,
        "repeats": 1,
        "signature": sign,
        "duration_ms": result.timings.get("total", 0.0),
        "status": result.status.value,
        "failed_step": result.failed_step,
        "error": result.error,
        "banner": result.banner,
        "ehlo": list(result.ehlo),
        "starttls_reply": result.starttls_reply,
        "tls_version": result.tls_version,
        "cipher": result.cipher,
        "leaf_sha256": prints[0] if prints else None,
        "chain": prints,
        "timings": result.timings,
        "worst": severity.value if severity else None,
        "session": _session(record),
    }


def _recorded(record: ScanRecord) -> dict[str, Any] | None:
    """The contract to store with a served certificate: none when nothing is known of it
    (no outbound connector, no DANE or MTA-STS evidence), which is what a row without one
    means (``queries.stored_contract``), so a fleet without delivery connectors stores and
    encodes nothing more per row."""
    contract = record.contract()
    if contract is None or not (contract["known"] or contract["dane"] or contract["mtasts"]):
        return None
    return contract


def _session(record: ScanRecord) -> dict[str, Any] | None:
    """The stored session: an outbound check's capture, a tenant snapshot, or for a served
    certificate the contract it was judged by (report and status show it)."""
    contract = _recorded(record)
    if contract is None:
        return record.result.session
    return {**(record.result.session or {}), "delivery": contract}


def repeats(last: LatestRow, sign: str, at: datetime, heartbeat: timedelta) -> bool:
    """Does this probe only repeat the address's newest row (same signature, within the
    heartbeat, not older than what that row saw last)?"""
    _, _, _, _, signature, started, seen, _ = last
    return signature == sign and at - started < heartbeat and at >= (seen or started)
