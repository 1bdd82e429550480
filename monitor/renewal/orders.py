"""Placing an ACME order (with RFC 9773 ``replaces`` and a checked ``profile``), and keeping it:
an order placed and not completed yet (the CA stalled, the attempt timed out, the CA went
away mid-order) is kept beside the account and resumed by the next attempt instead of placing a
new one: orders count against a public CA's limits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from acme import crypto_util, messages
from cryptography import x509
from josepy.json_util import field as json_field

from monitor.errors import RenewalError
from monitor.files import write_secret

if TYPE_CHECKING:
    from pathlib import Path

    from acme import client

    from monitor.renewal.settings import RenewalSettings


class AcmeSession(Protocol):
    """What ordering needs of :class:`monitor.renewal.acme_flow.AcmeSession` (named here so
    this module does not import the one that imports it)."""

    settings: RenewalSettings
    state_dir: Path
    directory_url: str
    notes: list[str]
    client: client.ClientV2


ORDER, ORDER_KEY = "order.json", "order-key.pem"


class NewOrder(messages.NewOrder):
    """newOrder with RFC 9773's ``replaces`` (the ARI certificate identifier of the certificate
    this order renews), which ``acme`` 5 does not know yet."""

    replaces: str = json_field("replaces", omitempty=True)


def place(session: AcmeSession, csr_pem: bytes, profile: str | None, replaces: str | None) -> Any:
    """``ClientV2.new_order`` with ``replaces`` (RFC 9773 section 5)."""
    if not replaces:
        return (
            session.client.new_order(csr_pem, profile=profile)
            if profile
            else session.client.new_order(csr_pem)
        )
    csr = x509.load_pem_x509_csr(csr_pem)
    dns_names, _ = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names]
    order = NewOrder(identifiers=identifiers, profile=profile or "", replaces=replaces)
    response = session.client._post(session.client.directory["newOrder"], order)
    body = messages.Order.from_json(response.json())
    authorizations = [
        session.client._authzr_from_response(session.client._post_as_get(url), uri=url)
        for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr_pem,
    )


def profile(session: AcmeSession) -> str | None:
    """The configured profile, refused when the CA's directory lists profiles without it
    (a typo would otherwise be dropped silently); without any listed, it is ordered
    without one, and the outcome says so."""
    wanted = session.settings.profile
    profiles = getattr(session.client.directory.meta, "profiles", None) or {}
    if wanted is None:
        return None
    if not profiles:
        session.notes.append(f"the CA lists no profiles: ordered without profile '{wanted}'")
        return None
    if wanted not in profiles:
        raise RenewalError(
            f"the CA offers the profiles {', '.join(sorted(profiles))}, not '{wanted}'; fix "
            "`profile` (nothing was ordered)"
        )
    return wanted


def keep(session: AcmeSession, order: Any, key_pem: bytes, names: list[str]) -> None:
    """Remember a placed order until it completes (its key mode 0600)."""
    session.state_dir.mkdir(parents=True, exist_ok=True)
    write_secret(session.state_dir / ORDER_KEY, key_pem)
    meta = {
        "url": order.uri,
        "names": sorted(names),
        "directory": session.directory_url,
        "csr": order.csr_pem.decode() if isinstance(order.csr_pem, bytes) else order.csr_pem,
    }
    write_secret(session.state_dir / ORDER, json.dumps(meta).encode())


def forget(session: AcmeSession) -> None:
    for name in (ORDER, ORDER_KEY):
        (session.state_dir / name).unlink(missing_ok=True)


def resume(session: AcmeSession, names: list[str]) -> tuple[Any, bytes] | None:
    """The order a stalled attempt left (same names, same CA), if the CA still has it
    pending, ready or processing; ``None`` otherwise (and it is forgotten)."""
    try:
        meta = json.loads((session.state_dir / ORDER).read_text())
        key_pem = (session.state_dir / ORDER_KEY).read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("names") != sorted(names) or meta.get("directory") != session.directory_url:
        forget(session)
        return None
    try:
        body = messages.Order.from_json(session.client._post_as_get(meta["url"]).json())
    except messages.Error:  # the CA answered: no such order (404, expired): order anew
        forget(session)
        return None
    except Exception as exc:  # the CA unreachable again: keep the order for the next attempt
        raise RenewalError(f"cannot resume the pending order: {type(exc).__name__}") from exc
    if body.status not in (
        messages.STATUS_PENDING,
        messages.STATUS_READY,
        messages.STATUS_PROCESSING,
        messages.STATUS_VALID,
    ):
        forget(session)
        return None
    authorizations = [
        session.client._authzr_from_response(session.client._post_as_get(url), uri=url)
        for url in body.authorizations
    ]
    session.notes.append(f"resumed the pending order {meta['url']} (no new order)")
    order = messages.OrderResource(
        body=body, uri=meta["url"], authorizations=authorizations, csr_pem=meta["csr"].encode()
    )
    return order, key_pem
