"""No full mail address is kept: a delivery keeps the address's domain and a keyed hash of the
whole address (BLAKE2b keyed with a per-installation secret, so the same address is the same
hash in one installation and nobody without the key can test a guessed address against it).
The key comes from an environment variable or a file (``monitor.secrets``); subjects are never
read."""

from __future__ import annotations

import hashlib
from pathlib import Path

from monitor.secrets import read_secret

MIN_KEY = 16


class Privacy:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY:
            raise ValueError(f"the address hash key must be at least {MIN_KEY} bytes")
        self._key = key[:64]  # BLAKE2b's key size
        self._cache: dict[str, tuple[str, str]] = {}

    @classmethod
    def from_secret(cls, where: str, env: str | None, file: Path | None) -> Privacy:
        """The key named by a ``*_env`` or ``*_file`` key (``where`` names it in errors)."""
        secret = read_secret(where, env, file)
        assert secret is not None  # required=True raises instead
        return cls(secret.encode())

    def address(self, address: str) -> tuple[str, str]:
        """(domain, hash) of ``address``; the null sender is ("", "")."""
        known = self._cache.get(address)
        if known is not None:
            return known
        if not address:
            return "", ""
        folded = address.lower()
        domain = folded.rpartition("@")[2] if "@" in folded else ""
        digest = hashlib.blake2b(folded.encode(), key=self._key, digest_size=12).hexdigest()
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[address] = (domain, digest)
        return domain, digest
