"""Probe tokens that prove themselves: ``rc-<token>@<probe domain>`` carries which endpoint and
which kind of check it was issued for, when, and an HMAC over all of it with a per-installation
secret (like healthchecks' signed URLs or Django's signing).  Whoever does not hold the secret
cannot make a token that verifies, so mail relaycert did not ask for (a test send, a stray, an
attacker's session) can never be taken for an endpoint's result.

A token is lower-case hex, so it survives MTAs that fold the local part's case::

    k  eeeeeeeeee  tttttttt  nnnnnnnn  mmmmmmmmmmmmmmmmmmmmmmmm
    |  |           |         |         HMAC-SHA256 of the rest, 96 bits
    |  |           |         random nonce
    |  |           issued at (Unix seconds)
    |  the endpoint's id: HMAC of its name, 40 bits (0 for a test send not bound to one)
    kind: 1 a scheduled outbound check, 2 a hand test send (``relaycert capture --once``)

The secret is 32 random bytes written as 64 hex digits, created once (mode 0600) in ``[capture]
state_dir`` or read from ``[capture] token_secret_file`` (surrounding white space ignored, so a
copied generated file and an ``openssl rand -hex 32`` one work alike); instances that share one
capture listener share that file.  A secret file group or others may access is refused (like
ssh's private keys), naming its mode and the ``chmod 600`` that fixes it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.errors import ConfigError
from monitor.files import read_limited, write_secret

SECRET_NAME = "token-secret"  # noqa: S105 - the file name, not the secret
SECRET_BYTES = 32
_LAYOUT = re.compile(r"([12])([0-9a-f]{10})([0-9a-f]{8})([0-9a-f]{8})([0-9a-f]{24})")
NO_ENDPOINT = "0" * 10
# A token issued a little "in the future" is accepted: instances' clocks differ slightly.
CLOCK_SKEW = timedelta(minutes=5)


class Kind(enum.Enum):
    CHECK = "1"  # an outbound check's probe message
    TEST = "2"  # a hand test send, issued by ``relaycert capture --once``


@dataclass(frozen=True, slots=True)
class Claim:
    """What a verified token says: its kind, the endpoint id it names and when it was issued."""

    token: str
    kind: Kind
    endpoint_id: str
    issued: datetime


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a token does not count (shown with the unattributed capture)."""

    token: str
    reason: str


class TokenKeys:
    """Issues and verifies tokens with one secret; tokens older than ``lifetime`` expire."""

    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        if len(secret) < 16:
            raise ValueError("a token secret needs at least 16 bytes")
        self._secret, self.lifetime = secret, lifetime

    def endpoint_id(self, name: str) -> str:
        """The 40-bit id of endpoint ``name`` in this installation's tokens."""
        digest = hmac.new(self._secret, b"endpoint\0" + name.encode(), hashlib.sha256)
        return digest.hexdigest()[:10]

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, b"token\0" + body.encode(), hashlib.sha256).hexdigest()[:24]

    def issue(self, kind: Kind, endpoint: str | None, now: datetime) -> str:
        """A new token for ``endpoint`` (``None``: a test send bound to no endpoint)."""
        ident = self.endpoint_id(endpoint) if endpoint is not None else NO_ENDPOINT
        body = f"{kind.value}{ident}{int(now.timestamp()):08x}{secrets.token_hex(4)}"
        return body + self._mac(body)

    def verify(self, token: str, now: datetime) -> Claim | Rejected:
        """The claim of ``token``, or why it does not count (malformed, forged, expired)."""
        token = token.lower()
        parts = _LAYOUT.fullmatch(token)
        if parts is None:
            return Rejected(token, "not a relaycert token")
        kind, ident, issued_hex, _, mac = parts.groups()
        if not hmac.compare_digest(mac, self._mac(token[:-24])):
            return Rejected(token, "the token does not verify (not issued by this installation)")
        issued = datetime.fromtimestamp(int(issued_hex, 16), UTC)
        if issued - now > CLOCK_SKEW:
            return Rejected(token, f"the token was issued in the future ({issued:%Y-%m-%d %H:%M})")
        if now - issued > self.lifetime:
            return Rejected(token, f"the token expired (issued {issued:%Y-%m-%d %H:%M} UTC)")
        return Claim(token, Kind(kind), ident, issued)


class EndpointIds:
    """Endpoint names by token id, for one configuration's endpoints.  Two names with one id (a
    40-bit collision) are both refused rather than guessed between."""

    def __init__(self, keys: TokenKeys, names: Iterable[str]) -> None:
        found: dict[str, list[str]] = {}
        for name in names:
            found.setdefault(keys.endpoint_id(name), []).append(name)
        self._names: Mapping[str, list[str]] = found

    def name(self, endpoint_id: str) -> str | None:
        names = self._names.get(endpoint_id, [])
        return names[0] if len(names) == 1 else None


def private(path: Path, key: str) -> None:
    """Refuse a secret file that group or others may read or write, as ssh refuses such a
    private key: whoever reads the token secret can forge every endpoint's probe tokens."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it says why
    if mode & 0o077:
        raise ConfigError(
            f"[capture] {key}: {path} has mode {mode:04o}, so other users may read it (whoever "
            f"reads it can forge probe tokens); run `chmod 600 {path}` (readable by the user "
            "relaycert runs as only) and start again"
        )


def load_secret(configured: Path | None, state_dir: Path) -> bytes:
    """The installation's token secret: ``configured`` (a file of at least 16 bytes), else
    ``state_dir/token-secret``, created once with mode 0600.  Either is refused when group or
    others may access it (:func:`private`)."""
    if configured is not None:
        private(configured, "token_secret_file")
        try:
            secret = read_limited(configured, 4096).strip()
        except OSError as exc:
            raise ConfigError(
                f"[capture] token_secret_file: cannot read {configured}: {exc.strerror}; "
                "give a readable file of at least 16 random bytes (e.g. `openssl rand -hex 32 "
                "> FILE; chmod 600 FILE`)"
            ) from None
        if len(secret) < 16:
            raise ConfigError(
                f"[capture] token_secret_file: {configured} holds {len(secret)} bytes; "
                "give at least 16 random bytes"
            )
        return secret
    path = state_dir / SECRET_NAME
    private(path, "state_dir")
    try:
        if path.is_file():
            secret = read_limited(path, 4096).strip()
            if len(secret) >= 16:
                return secret
        state_dir.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(SECRET_BYTES).hex().encode()
        write_secret(path, secret + b"\n")
    except OSError as exc:
        raise ConfigError(
            f"[capture] state_dir: cannot keep the token secret in {state_dir}: {exc.strerror}; "
            "make the folder writable or set token_secret_file"
        ) from None
    return secret
