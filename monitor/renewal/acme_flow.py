"""The ACME exchange with certbot's ``acme`` library (synchronous: called in a worker thread).

The account key is made once, stored with mode 0600 next to the account URL, and reused.
Private keys are never logged.  ``acme``'s deadlines use naive local time; this module keeps
that detail to itself.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import RS256
from josepy.jwk import JWKRSA

from monitor.clock import Clock, utcnow
from monitor.errors import RenewalError
from monitor.files import write_secret
from monitor.renewal import orders
from monitor.renewal.settings import RenewalSettings
from monitor.renewal.solvers import Solver

USER_AGENT = "relaycert"
RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"
ACCOUNT_GONE = "urn:ietf:params:acme:error:accountDoesNotExist"


class RateLimited(RenewalError):
    """The CA said "rateLimited"; ``retry_after`` is when it allows the next try (if it said)."""

    def __init__(self, message: str, retry_after: dt.datetime | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Network(client.ClientNetwork):
    """The ``acme`` network client, remembering the last Retry-After the CA sent (the library
    raises the error body without the header), as a time by ``clock``."""

    retry_after: dt.datetime | None = None
    last_status: int | None = None
    clock: Clock  # set by AcmeSession before any request

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        value = response.headers.get("Retry-After")
        self.retry_after = _retry_after(value, self.clock()) if value else None
        return response


def _retry_after(value: str, now: dt.datetime) -> dt.datetime | None:
    if value.strip().isdigit():
        return now + dt.timedelta(seconds=min(int(value), 7 * 86400))
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def ari_id(cert: x509.Certificate) -> str:
    """The ARI certificate identifier: base64url(authority key id) "." base64url(serial)."""
    return str(client._renewal_info_path_component(cert))


def new_private_key(kind: str) -> bytes:
    """A PKCS#8 PEM private key: ``rsa2048``..``rsa4096``, ``ec256``, ``ec384``."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    else:
        key = ec.generate_private_key(ec.SECP384R1() if kind == "ec384" else ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Issued:
    fullchain_pem: str
    key_pem: bytes
    order_url: str | None


class AcmeSession:
    """An ACME account on one directory, ready to order."""

    def __init__(
        self,
        settings: RenewalSettings,
        state_dir: Path,
        eab_hmac: str | None,
        clock: Clock = utcnow,
    ) -> None:
        self.settings, self.state_dir = settings, state_dir
        self.notes: list[str] = []  # what the outcome should say (a resumed order, a profile)
        key = self._key = self._account_key()
        verify: Any = str(settings.ca_file) if settings.ca_file else True
        self.directory_url = settings.directory
        self.net = _Network(key, alg=RS256, verify_ssl=verify, user_agent=USER_AGENT, timeout=30)
        self.net.clock = clock  # Retry-After in seconds counts from the attempt's clock
        try:
            directory = client.ClientV2.get_directory(settings.directory, self.net)
        except Exception as exc:  # requests, JSON and acme errors: the CA is unreachable
            raise RenewalError(
                f"ACME directory {settings.directory} unreachable: {type(exc).__name__}"
            ) from exc
        self.client = client.ClientV2(directory, self.net)
        self._register(key, eab_hmac)

    def _account_key(self) -> JWKRSA:
        path = self.state_dir / "account-key.pem"
        if not path.exists():
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_secret(path, pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return JWKRSA(key=key)

    def _register(self, key: JWKRSA, eab_hmac: str | None, forget: bool = False) -> None:
        self._eab_hmac = eab_hmac
        account_file = self.state_dir / "account.json"
        known = json.loads(account_file.read_text()) if account_file.exists() else {}
        if forget:
            known = {}
        if known.get("directory") == self.settings.directory and known.get("uri"):
            regr = messages.RegistrationResource(uri=known["uri"], body=messages.Registration())
            self.net.account = regr
            return
        eab = None
        if self.settings.eab_kid and eab_hmac:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=key.public_key(),
                kid=self.settings.eab_kid,
                hmac_key=eab_hmac,
                directory=self.client.directory,
            )
        registration = messages.NewRegistration.from_data(
            email=self.settings.email, terms_of_service_agreed=True, external_account_binding=eab
        )
        try:
            regr = self.client.new_account(registration)
        except errors.ConflictError as exc:  # the key already has an account
            regr = self.client.query_registration(
                messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            )
        except messages.Error as exc:
            raise RenewalError(
                f"ACME account registration refused: {exc.typ}: {exc.detail}"
            ) from exc
        self.net.account = regr
        account_file.write_text(json.dumps({"directory": self.settings.directory, "uri": regr.uri}))

    def reregister(self) -> None:
        """The CA no longer knows the account (``accountDoesNotExist``, e.g. after a CA reset):
        register the same key again and remember the new account URL."""
        self.net.account = None  # a new account is asked for with the key itself (JWK)
        self._register(self._key, self._eab_hmac, forget=True)

    @property
    def offers_ari(self) -> bool:
        return "renewalInfo" in self.client.directory

    def renewal_time(self, cert_pem: bytes) -> tuple[dt.datetime | None, dt.datetime]:
        """ARI (RFC 9773) when the directory offers it: (suggested time, next check), both
        tz-aware UTC; ``(None, next check)`` when it does not.  Any ARI failure (a 404 for a
        certificate this CA did not issue, a 500) is a :class:`RenewalError` in plain words."""
        try:
            when, next_check = self.client.renewal_time(cert_pem)
        except errors.ARIError as exc:
            cause = exc.__cause__
            status = self.net.last_status
            why = f"HTTP {status}" if status and status >= 400 else "no answer"
            if isinstance(cause, messages.Error) and cause.detail:
                why += f" ({cause.detail})"
            raise RenewalError(f"the CA's renewal information (ARI) is unavailable: {why}") from exc
        except Exception as exc:  # a malformed answer
            raise RenewalError(
                f"the CA's renewal information (ARI) is unusable: {type(exc).__name__}"
            ) from exc
        local = next_check.astimezone() if next_check.tzinfo is None else next_check
        return when, local.astimezone(dt.UTC)

    def issue(
        self,
        names: list[str],
        solver: Solver,
        key_pem: bytes | None = None,
        replaces: str | None = None,
    ) -> Issued:
        """Order, validate and finalize; one retry with a fresh registration when the CA has
        forgotten the account."""
        try:
            return self._issue(names, solver, key_pem, replaces)
        except _AccountGone:
            self.reregister()
            return self._issue(names, solver, key_pem, replaces)

    def _issue(
        self, names: list[str], solver: Solver, key_pem: bytes | None, replaces: str | None
    ) -> Issued:
        profile = orders.profile(self)
        try:
            resumed = orders.resume(self, names)
            if resumed is not None:  # a stalled attempt's order: no new one (CA limits)
                order, key_pem = resumed
            else:
                key_pem = key_pem or new_private_key(self.settings.key_type)
                csr = crypto_util.make_csr(key_pem, names)
                order = orders.place(self, csr, profile, replaces)
                orders.keep(self, order, key_pem, names)
            for authz in order.authorizations:
                if authz.body.status != messages.STATUS_PENDING:
                    continue
                domain = authz.body.identifier.value
                wanted = challenges.HTTP01 if solver.challenge == "http-01" else challenges.DNS01
                challenge = next(
                    (c for c in authz.body.challenges if isinstance(c.chall, wanted)), None
                )
                if challenge is None:
                    raise RenewalError(
                        f"the CA offers no {solver.challenge} challenge for "
                        f"{domain} (wildcards need DNS-01)"
                    )
                response, validation = challenge.response_and_validation(self.net.key)
                path = challenge.chall.path if solver.challenge == "http-01" else ""
                solver.present(domain, path, validation)
                if challenge.status in (None, messages.STATUS_PENDING):
                    self.client.answer_challenge(challenge, response)
            deadline = dt.datetime.now() + self.settings.timeout  # noqa: DTZ005 - acme wants naive
            if order.body.status in (messages.STATUS_VALID, messages.STATUS_PROCESSING):
                order = self.client.poll_finalization(order, deadline)
            else:
                order = self.client.poll_and_finalize(order, deadline)
        except RenewalError:
            raise
        except errors.ValidationError as exc:
            orders.forget(self)  # invalid: a retry orders anew
            details = "; ".join(
                f"{a.body.identifier.value}: "
                + ", ".join(str(c.error.detail) for c in a.body.challenges if c.error)
                for a in exc.failed_authzrs
            )
            raise RenewalError(f"ACME validation failed: {details}") from exc
        except errors.TimeoutError as exc:
            raise RenewalError("ACME order did not complete within the renewal timeout") from exc
        except messages.Error as exc:
            if exc.typ == ACCOUNT_GONE:
                raise _AccountGone(str(exc.detail)) from exc
            if exc.typ == RATE_LIMITED:
                retry = self.net.retry_after
                when = (
                    f"; the CA allows the next try after {retry:%Y-%m-%d %H:%M} UTC"
                    if retry
                    else ""
                )
                raise RateLimited(
                    f"the CA rate-limits this order: {exc.detail}{when}", retry
                ) from exc
            raise RenewalError(f"ACME error: {exc.typ}: {exc.detail}") from exc
        except Exception as exc:  # requests errors: the CA went away mid-order
            raise RenewalError(f"ACME exchange failed: {type(exc).__name__}") from exc
        orders.forget(self)
        return Issued(order.fullchain_pem, key_pem, order.uri)


class _AccountGone(RenewalError):
    """The CA answered ``accountDoesNotExist``."""
