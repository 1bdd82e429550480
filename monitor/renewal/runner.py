"""One renewal, end to end, as separate steps: decide, order, gate, deploy (with hooks), verify
that it is served, record, alert.

A failed renewal never removes the working certificate (nothing is written before the gate
passes, and files are replaced atomically), is recorded, alerts through the outbox, and is
retried later with backoff.
"""

from __future__ import annotations

import asyncio
import os

from cryptography import x509

from checks.base import Finding, Severity
from checks.certinfo import all_names, dns_sans, fingerprint
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.errors import RenewalError
from monitor.files import read_limited, write_secret
from monitor.pipeline.scan import Scanner
from monitor.renewal import context, dane_gate, decide, history, pending
from monitor.renewal.acme_flow import AcmeSession, Issued, RateLimited, ari_id, new_private_key
from monitor.renewal.attempt import DEPLOYED, Attempt
from monitor.renewal.decide import Due
from monitor.renewal.deploy import gate, run_hooks, write_files
from monitor.renewal.outcome import NOT_DUE, Outcome, Result
from monitor.renewal.settings import RenewalSettings, staging_of
from monitor.renewal.solvers import make_solver
from monitor.renewal.verify import verify_outbound, verify_send_connector, verify_served
from monitor.secrets import read_secret
from monitor.store import cluster
from monitor.store.engine import Store
from monitor.store.reads.renewal import Served, renewals, served


async def _order(
    attempt: Attempt, session: AcmeSession, names: list[str], replaces: str | None
) -> Issued:
    solver = await asyncio.to_thread(make_solver, attempt.settings.solver, attempt.where)
    key_pem = await asyncio.to_thread(_order_key, attempt)
    try:
        return await asyncio.to_thread(session.issue, names, solver, key_pem, replaces)
    finally:
        await asyncio.to_thread(solver.cleanup)


def _order_key(attempt: Attempt) -> bytes | None:
    """The key to order with: a staged next key (``relaycert renew --next-key``, DANE), else
    the kept key with ``reuse_key``, else none (the ACME client makes a new one)."""
    staged = attempt.settings.state_dir / attempt.settings.name / dane_gate.NEXT_KEY
    if staged.exists():
        return read_limited(staged)
    return _reused_key(attempt) if attempt.settings.reuse_key else None


def _promote_next_key(attempt: Attempt) -> None:
    """A certificate for the staged next key is deployed: with ``reuse_key`` it is the kept key
    from now on; without, it is simply used up."""
    folder = attempt.settings.state_dir / attempt.settings.name
    staged = folder / dane_gate.NEXT_KEY
    if not staged.exists():
        return
    if attempt.settings.reuse_key:
        os.replace(staged, folder / "key.pem")
    else:
        staged.unlink()


def _reused_key(attempt: Attempt) -> bytes:
    """``reuse_key``: the renewal's private key, made once and kept (mode 0600)."""
    path = attempt.settings.state_dir / attempt.settings.name / "key.pem"
    if not path.exists():
        write_secret(path, new_private_key(attempt.settings.key_type))
    return read_limited(path)


async def _deploy(
    attempt: Attempt, issued: Issued, chain: tuple[x509.Certificate, ...], names: list[str]
) -> tuple[Result, str]:
    """Write the files, run the hooks, verify; the result and what to say about it."""
    settings, where = attempt.settings, attempt.where
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
            run_hooks, settings.deploy, deployed, settings.name, names, list(settings.endpoints)
        )
    except RenewalError as exc:
        return Result.HOOK_FAILED, str(exc)
    deployed_at = attempt.clock()
    stale = await verify_served(attempt, chain)
    if stale:
        return Result.NOT_SERVED, "still served the old certificate: " + ", ".join(stale)
    steps = f"deployed {deployed_at:%H:%M:%S}, verified served {attempt.clock():%H:%M:%S} UTC"
    relaying = await verify_outbound(attempt, fingerprint(chain[0]))
    sending = await asyncio.to_thread(verify_send_connector, attempt.context.send_connectors)
    return Result.VERIFIED, f"deployed and served by every address ({steps})" + relaying + sending


async def _issue_and_deploy(
    attempt: Attempt, current: Served, names: list[str], force: bool, dry_run: bool
) -> tuple[Outcome, str | None]:
    """Decide, check, order (or reuse the certificate a failed attempt kept), gate, deploy;
    the outcome and the ACME order's URL."""
    settings, name = attempt.settings, attempt.settings.name
    old = fingerprint(current.leaf) if current.leaf else None
    eab = read_secret(
        f"{attempt.where}.eab_hmac", settings.eab_hmac_env, settings.eab_hmac_file, required=False
    )
    directory, state_dir = settings.directory, settings.state_dir / name
    if dry_run:  # certbot's rule: a dry run never touches the production account
        staging = staging_of(settings)
        if staging is None:
            raise RenewalError(
                f"{attempt.where}.staging_directory: --dry-run orders from the CA's staging "
                f"directory, and none is known for {settings.directory}; set staging_directory"
            )
        directory, state_dir = staging, state_dir / "staging"
    now = attempt.clock()
    try:
        session = await asyncio.to_thread(
            AcmeSession,
            settings.model_copy(update={"directory": directory}),
            state_dir,
            eab,
            attempt.clock,
        )
        decision = (
            Due("forced")
            if force
            else await asyncio.to_thread(decide.due, session, current, settings, now)
        )
    except RenewalError as exc:
        # Nothing is due by what is known without the CA: a CA outage is no emergency yet.
        not_due = None if force else decide.due_by_lifetime(current, settings, now)
        if not_due is None:
            raise
        detail = f"the CA could not be asked ({exc}); not due before {not_due:%Y-%m-%d %H:%M} UTC"
        return Outcome(name, Result.UNCHECKED, detail, old), None
    if decision.reason is None:
        when = f"; due from {decision.due_at:%Y-%m-%d %H:%M} UTC" if decision.due_at else ""
        note = f" ({decision.note})" if decision.note else ""
        detail = f"{NOT_DUE}{when}{note}"
        return Outcome(name, Result.SKIPPED, detail, old, next_check=decision.next_check), None
    policies = decide.policies(attempt.context, now, attempt.scanner.anchors)
    problem = decide.precheck(names, policies)
    if problem is not None:
        return Outcome(name, Result.GATE_REFUSED, f"before ordering: {problem}", old), None
    kept = None if dry_run else await asyncio.to_thread(pending.load, state_dir)
    why_not = kept and pending.unusable(kept, names, now, settings.min_lifetime)
    if kept is not None and not why_not:
        issued, how = kept, "reused the certificate a failed attempt kept (no new order)"
    else:
        replaces = ari_id(current.leaf) if decision.ari_known and current.leaf else None
        issued = await _order(attempt, session, names, replaces)
        how = f"ordered (issued {attempt.clock():%H:%M:%S} UTC)"
        if session.notes:
            how += "; " + "; ".join(session.notes)
        if not dry_run:
            await asyncio.to_thread(pending.save, state_dir, issued)
    chain = tuple(x509.load_pem_x509_certificates(issued.fullchain_pem.encode()))
    new = fingerprint(chain[0])
    # Judged at issuance time: the new certificate's notBefore is later than ``now``.
    judged_at = attempt.clock()
    policies = decide.policies(attempt.context, judged_at, attempt.scanner.anchors)
    blocking = gate(chain, policies, settings.min_lifetime, judged_at)
    if dry_run:  # a staging CA's root is not trusted, by design
        blocking = [f for f in blocking if f.rule != "cert.untrusted"]
    revocation = await attempt.scanner.crls.check(chain, judged_at)
    if revocation is not None and revocation.status == "revoked":
        blocking.append(
            Finding(
                "cert.revoked",
                Severity.CRITICAL,
                f"the new certificate is already revoked (CRL {revocation.url})",
            )
        )
    if blocking:
        await asyncio.to_thread(pending.clear, state_dir)
        detail = "; ".join(f"{f.rule}: {f.message}" for f in blocking)
        return Outcome(name, Result.GATE_REFUSED, detail, old, new), issued.order_url
    dane = await dane_gate.check(attempt, chain, current.leaf)
    if dane.refused:  # the certificate is good: it is kept for when its record is published
        detail = "; ".join(f"{f.rule}: {f.message}" for f in dane.refused)
        return Outcome(name, Result.GATE_REFUSED, detail, old, new), issued.order_url
    if dane.ready is not None:
        detail = (
            "; ".join(dane.waiting)
            + f"; the issued certificate is kept and deployed from {dane.ready:%Y-%m-%d %H:%M:%S}"
            " UTC"
        )
        outcome = Outcome(name, Result.SKIPPED, detail, old, new, next_check=dane.ready)
        return outcome, issued.order_url
    if dry_run:
        sans = ", ".join(sorted(dns_sans(chain[0])))
        detail = f"issued by the staging CA for {sans} and judged ({decision.reason}); not deployed"
        detail += "".join(f"; {note}" for note in session.notes)
        return Outcome(name, Result.DRY_RUN, detail, old, new), issued.order_url
    result, detail = await _deploy(attempt, issued, chain, names)
    if result is Result.VERIFIED:
        await asyncio.to_thread(pending.clear, state_dir)
        await asyncio.to_thread(_promote_next_key, attempt)
        detail = f"{decision.reason}; {how}; {detail}"
    else:
        detail = f"{detail} ({how}; kept for the next attempt)"
    return Outcome(name, result, detail, old, new), issued.order_url


async def renew(
    config: Config,
    store: Store,
    settings: RenewalSettings,
    *,
    force: bool = False,
    dry_run: bool = False,
    now_fn: Clock | None = None,
    scanner: Scanner | None = None,
) -> Outcome:
    """Run one renewal once (when due, or ``force``); record it and alert on failure.

    Only one renewal of a name runs at a time across every process on the store (daemons on
    other hosts, ``relaycert renew``): the others are skipped, so a certificate is never
    ordered twice at once."""
    with cluster.exclusive(store, f"renewal:{settings.name}") as taken:
        if not taken:
            return Outcome(
                settings.name,
                Result.SKIPPED,
                "another instance (or relaycert renew) is renewing this certificate right now",
                None,
            )
        return await _renew(config, store, settings, force, dry_run, now_fn, scanner)


async def _renew(
    config: Config,
    store: Store,
    settings: RenewalSettings,
    force: bool,
    dry_run: bool,
    now_fn: Clock | None,
    scanner: Scanner | None,
) -> Outcome:
    clock = now_fn or utcnow
    attempt = Attempt(
        context.build(config, settings, clock), store, scanner or Scanner(config, store)
    )
    settings, started = attempt.settings, clock()
    current = await asyncio.to_thread(served, store, settings.endpoints, decide.URGENT_RULES)
    # enough rows to see a day of quiet checks at any check_interval of a minute or more
    attempts = await asyncio.to_thread(renewals, store, None, 2000, settings.name)
    deployed_at = next(
        (h.finished_at for h in attempts if h.outcome in DEPLOYED and h.finished_at), None
    )
    if deployed_at is not None and (current.seen_at is None or current.seen_at < deployed_at):
        # What is stored predates the last deployment: look again before deciding.
        await attempt.scanner.scan(list(attempt.context.endpoints))
        current = await asyncio.to_thread(served, store, settings.endpoints, decide.URGENT_RULES)
    not_before = decide.backoff(attempts)  # after failures: the earliest next attempt
    old = fingerprint(current.leaf) if current.leaf else None
    names = list(settings.names) or (all_names(current.leaf) if current.leaf else [])
    if not names:
        raise RenewalError(
            f"{attempt.where}.names: no names given and no certificate seen on "
            f"{', '.join(settings.endpoints)} yet; list the names"
        )
    if not force and not_before is not None and started < not_before:
        wait = f"retrying after {not_before:%Y-%m-%d %H:%M} UTC (backoff after failures)"
        return Outcome(settings.name, Result.SKIPPED, wait, old)
    order_url: str | None = None
    try:
        outcome, order_url = await _issue_and_deploy(attempt, current, names, force, dry_run)
    except RateLimited as exc:  # ask again when the CA allows it, not on the backoff
        outcome = Outcome(settings.name, Result.FAILED, str(exc), old, next_check=exc.retry_after)
    except RenewalError as exc:
        outcome = Outcome(settings.name, Result.FAILED, str(exc), old)
    streak = history.failing_streak(attempts)
    if outcome.outcome is Result.SKIPPED and not history.ends_streak(streak, outcome):
        return outcome
    # A "not due" check after a streak is the CA answering again: recorded (it ends the
    # streak), and what was told is resolved (before: the page stayed open until it was due).
    outcome = history.escalated(streak, outcome, started)
    told = history.alerted(streak)
    await history.record(attempt, started, outcome, order_url, told, streak, current.leaf)
    return outcome
