"""How a :class:`~monitor.pipeline.scan.Scanner` runs, fixed when it is made."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.base import TrustAnchors
from monitor.alerts.policy import Tracking
from monitor.clock import Clock, utcnow
from monitor.results import ScanRecord

if TYPE_CHECKING:
    from monitor.capture.listener import CaptureListener
    from monitor.probe.workers import ProbePool

__all__ = ["ScanOptions"]


@dataclass(frozen=True)
class ScanOptions:
    """How a scanner runs, fixed when it is made.

    ``tracking``: how results feed baselines and alerts (default: baselines only, no alerts).
    ``daemon``: the daemon's scanner checks legacy TLS versions (at most once per
    ``[probe] legacy_tls_every``), stores endpoint jobs finishing together in one transaction
    (:mod:`.batching`) and keeps results the store cannot take for now (:mod:`.unstored`); a
    one-shot scan does none of that, and its store errors end it.  ``legacy_tls``: check legacy
    TLS versions in a one-shot scan too.  ``pool``: probe worker processes (``relaycert scan``
    over many addresses), which makes a scan streamed (:mod:`.streamed`); ``on_judged`` is told
    each endpoint's records as soon as they are judged in one (the CLI encodes its JSON then).
    ``clock``: the instant a scan is judged at, read once per scan.  ``capture``: the capture
    listener the outbound checks wait at (started before the scanner is made:
    :func:`~monitor.pipeline.listening.listening`, the daemon's generation); without one,
    ``capture_unavailable`` is why, which each outbound check reports instead of a verdict.
    """

    tracking: Tracking | None = None
    anchors: TrustAnchors | None = None
    daemon: bool = False
    legacy_tls: bool = False
    pool: ProbePool | None = None
    on_judged: Callable[[Sequence[ScanRecord]], None] | None = None
    clock: Clock = utcnow
    capture: CaptureListener | None = None
    capture_unavailable: str | None = None
