"""What every kind of job shares: the generation of the moment (every job reads it when it
runs, so a reload that swaps it in applies to the next run), the store, this instance's claims
(:mod:`monitor.service.membership`), the clock, the outbox's wake-up, and running one job body:
tracked for shutdown, its errors one log line, so one failing job never stops the others.

A job that fails is remembered until its next run succeeds (:attr:`JobContext.failing`); one
that has failed :data:`FAILING_RUNS` runs in a row makes ``/healthz`` answer 503 with its error
(:meth:`JobContext.problem`), so a daemon that runs but cannot do a job is not called healthy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from checks.certinfo import clip
from monitor.clock import Clock
from monitor.errors import RelaycertError, StoreGoneError
from monitor.logs import event
from monitor.service.generation import Generation
from monitor.service.membership import Membership, tolerance
from monitor.store.engine import Store

log = logging.getLogger("relaycert.daemon")
FAILING_RUNS = 3  # runs in a row a job fails before /healthz says so


@dataclass
class Failing:
    """A job whose runs fail: since when, how many runs in a row, the newest error."""

    since: datetime
    runs: int
    error: str


class JobContext:
    """The daemon's state every job kind reads; ``gen`` is replaced on reload."""

    def __init__(self, store: Store, gen: Generation, membership: Membership, clock: Clock) -> None:
        self.store, self.gen, self.membership, self.clock = store, gen, membership, clock
        self.wake_outbox = asyncio.Event()  # probes enqueued messages: deliver soon
        self.inflight: set[asyncio.Task[object]] = set()
        # Called with an error that must stop the daemon (the store's file is gone).
        self.on_fatal: Callable[[RelaycertError], None] | None = None
        # Jobs ("probe:NAME", "outbox", ...) whose newest run failed, until one succeeds.
        self.failing: dict[str, Failing] = {}

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` among the work shutdown waits for (until it is done)."""
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def guarded(self, kind: str, work: Coroutine[Any, Any, object], **fields: Any) -> None:
        """Run one job body, tracked for shutdown; its errors become one log line, and the
        job counts as failing until a run of it succeeds.  An exception that is not relaycert's
        own kind is a defect: logged with its traceback (``KIND.internal_error``), never
        raised to the scheduler."""
        task = asyncio.current_task()
        if task is not None:
            self.track(task)
        job = ":".join([kind, *(str(v) for v in fields.values())])
        try:
            await work
        except StoreGoneError as exc:
            event(log, logging.CRITICAL, "store.gone", error=str(exc), **fields)
            self._failed(job, str(exc))
            if self.on_fatal is not None:
                self.on_fatal(exc)
        except RelaycertError as exc:
            event(log, logging.ERROR, f"{kind}.error", error=str(exc), **fields)
            self._failed(job, str(exc))
        except asyncio.CancelledError:
            # Shutdown abandoned it after the grace period (nothing of it was stored): one log
            # line, not a traceback per job from the scheduler.
            event(log, logging.WARNING, f"{kind}.abandoned", **fields)
        except OSError as exc:  # the host's fault (a full disk, a permission): no traceback
            where = f" ({exc.filename})" if exc.filename else ""
            error = clip(f"{exc.strerror or type(exc).__name__}{where}", 300)
            event(log, logging.ERROR, f"{kind}.error", error=error, **fields)
            self._failed(job, error)
        except Exception as exc:
            error = clip(f"{type(exc).__name__}: {exc}", 300)
            event(log, logging.ERROR, f"{kind}.internal_error", exc_info=exc, error=error, **fields)
            self._failed(job, f"{error} (a defect of relaycert: see the log)")
        else:
            self.failing.pop(job, None)

    def _failed(self, job: str, error: str) -> None:
        known = self.failing.get(job)
        if known is None:
            self.failing[job] = Failing(self.clock(), 1, clip(error, 300))
        else:
            known.runs, known.error = known.runs + 1, clip(error, 300)

    def problem(self) -> str | None:
        """Why the daemon is not doing its work (for ``/healthz``): the jobs that have failed
        :data:`FAILING_RUNS` runs in a row, the first few named; ``None`` when none has."""
        failing = sorted((j, f) for j, f in self.failing.items() if f.runs >= FAILING_RUNS)
        if not failing:
            return None
        named = "; ".join(
            f"{job} failed {f.runs} runs in a row since {f.since:%Y-%m-%d %H:%M} UTC: {f.error}"
            for job, f in failing[:3]
        )
        more = f" (and {len(failing) - 3} more jobs)" if len(failing) > 3 else ""
        return f"{named}{more}"

    async def claimed(self, key: str, every: timedelta, jitter: timedelta) -> bool:
        """Whether this instance does this run of ``key`` (:mod:`monitor.service.membership`)."""
        next_due = self.clock() + every - tolerance(every, jitter)
        return await self.membership.claim(key, next_due)
