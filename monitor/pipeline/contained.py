"""Containment: no lookup of one endpoint stops another endpoint's probe, or the scan.

The lookups that run beside the probes (MX routes, MTA-STS policies, TLSA records, CRLs) turn
every failure they expect (no answer, a refused connection, a hostile answer) into evidence
with its error, which the rules report as unknown.  Whatever else one of them raises is a
defect of relaycert's own: :func:`contained` logs it once with its traceback
(``lookup.internal_error``) and gives that one lookup's evidence the error instead, so the
probe's own evidence is kept and every other endpoint is judged as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from checks.certinfo import clip
from monitor.logs import event

log = logging.getLogger("relaycert.lookup")
T = TypeVar("T")


async def contained(what: str, work: Awaitable[T], fallback: Callable[[str], T]) -> T:
    """``await work``; when it raises (not a cancellation), ``fallback(reason)``."""
    try:
        return await work
    except Exception as exc:
        return fallback(lookup_failed(what, exc))


def lookup_failed(what: str, exc: Exception) -> str:
    """Log ``exc`` as a defect of the lookup ``what``; the reason its evidence shows."""
    event(log, logging.ERROR, "lookup.internal_error", exc_info=exc, lookup=what)
    return clip(
        f"the {what} failed inside relaycert ({type(exc).__name__}: {exc}); this is a "
        "defect of relaycert: the log has its traceback (event lookup.internal_error)",
        300,
    )
