"""Scan results for programs: the JSON documented in docs/scan-json.md.

Certificate text is attacker-controlled; ``json`` escapes it.  This module does not import rich,
so ``relaycert scan --format json`` does not pay for the terminal table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from cryptography import x509

from checks.base import Severity, worst
from checks.certinfo import clip, common_names
from monitor.certview import cert_info
from monitor.results import ScanRecord

JSON_VERSION = 1


def certificate_json(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    info = cert_info(cert, now, digits=2)
    return {
        "subject": info.subject,
        "common_names": [clip(n) for n in common_names(cert)],
        "sans": info.sans,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "days_left": info.days_left,
        "sha256": info.sha256,
        "key": info.key,
        "signature_hash": info.signature,
        "extended_key_usages": info.ekus,
    }


def record_json(
    record: ScanRecord, now: datetime, seen: dict[x509.Certificate, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One result; ``seen`` shares each certificate's (read-only) view between the results of
    one document, as a fleet serves few distinct certificates."""
    result, target = record.result, record.result.target
    seen = {} if seen is None else seen
    chain = []
    for cert in record.chain:
        view = seen.get(cert)
        if view is None:
            view = seen[cert] = certificate_json(cert, now)
        chain.append(view)
    leaf = chain[0] if chain else None
    severity = worst(f.severity for f in record.findings)
    return {
        "endpoint": target.endpoint,
        "host": target.host,
        "port": target.port,
        "address": target.address or None,
        "mode": record.mode,
        "connector": record.connector,
        "direction": target.direction.value,
        "status": result.status.value,
        "failed_step": result.failed_step,
        "error": result.error,
        "started_at": result.started_at.isoformat(),
        "banner": result.banner,
        "starttls_reply": result.starttls_reply,
        "tls_version": result.tls_version,
        "cipher": result.cipher,
        "subject": leaf["subject"] if leaf else None,
        "sans": leaf["sans"] if leaf else [],
        "issuer": leaf["issuer"] if leaf else None,
        "not_after": leaf["not_after"] if leaf else None,
        "days_left": leaf["days_left"] if leaf else None,
        "sha256": leaf["sha256"] if leaf else None,
        "chain": chain,
        "timings_ms": result.timings,
        "delivery": record.contract(),
        "session": result.session,
        "worst": severity.value if severity else None,
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "message": f.message,
                "direction": target.direction.value,
            }
            for f in record.findings
        ],
    }


# Stands for a result's chain while the rest of the result is encoded; a string no value can
# produce with its quotes unescaped, so the first match is the key itself.
_CHAIN_MARK = "\x00chain"
_CHAIN_KEY = '"chain": ' + json.dumps(_CHAIN_MARK)


class ResultTexts:
    """Each result's JSON text, encoded when it is handed over: a large scan hands each
    endpoint's records over as soon as they are judged, while other probes still run, so little
    is left to encode after the last one.  A result's chain is encoded once per distinct chain
    (a fleet serves a few) and spliced in when written."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._views: dict[x509.Certificate, dict[str, Any]] = {}
        self._chains: dict[tuple[x509.Certificate, ...], str] = {}
        self._texts: dict[int, tuple[ScanRecord, str]] = {}

    def add(self, records: Sequence[ScanRecord]) -> None:
        for record in records:
            self._texts[id(record)] = (record, self._encode(record))

    def text(self, record: ScanRecord) -> str:
        """The result as ``json.dumps(document, indent=2)`` writes it inside the document."""
        known = self._texts.get(id(record))
        item = known[1] if known is not None and known[0] is record else self._encode(record)
        return item.replace(_CHAIN_KEY, '"chain": ' + self._chains[record.chain], 1)

    def _encode(self, record: ScanRecord) -> str:
        # A result is two levels deep: its lines are indented four more spaces, its chain's six.
        # (A newline inside a string is escaped by json: only structural line breaks move.)
        document = record_json(record, self.now, self._views)
        if record.chain not in self._chains:
            chain = json.dumps(document["chain"], indent=2).replace("\n", "\n      ")
            self._chains[record.chain] = chain
        document["chain"] = _CHAIN_MARK
        return json.dumps(document, indent=2).replace("\n", "\n    ")


def write_json(
    records: Sequence[ScanRecord],
    now: datetime,
    exit_code: int,
    out: TextIO,
    texts: ResultTexts | None = None,
) -> None:
    """Write the document, the same text as ``json.dumps(document, indent=2)``, one result at
    a time: a 20 000-address scan never holds its whole JSON text in memory.  ``texts`` holds
    results encoded already (see :class:`ResultTexts`)."""
    texts = texts or ResultTexts(now)
    severity = worst(f.severity for r in records for f in r.findings)
    counts = {s.value: 0 for s in Severity}
    for record in records:
        for finding in record.findings:
            counts[finding.severity.value] += 1
    head = {
        "version": JSON_VERSION,
        "scanned_at": now.isoformat(),
        "summary": {
            "addresses": len(records),
            "worst": severity.value if severity else None,
            "exit_code": exit_code,
            "findings": counts,
        },
        "results": [],
    }
    text = json.dumps(head, indent=2)
    if not records:
        out.write(text)
        return
    out.write(text.removesuffix("[]\n}") + "[")
    for index, record in enumerate(records):
        out.write(("," if index else "") + "\n    " + texts.text(record))
    out.write("\n  ]\n}")
