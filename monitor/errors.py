"""The one exception tree of relaycert.

Findings (a bad certificate, a missing STARTTLS) are data, not exceptions.  Exceptions are the
monitor's own failures::

    RelaycertError
    ├── ConfigError (ValueError)            bad configuration file, key or value
    ├── InputFileError (ValueError)         a certificate file that cannot be read or parsed
    ├── StoreError                          the database cannot be opened, migrated or written
    ├── DeliveryError                       a channel did not accept a message (.permanent)
    ├── RenewalError                        an ACME renewal step failed
    └── ProbeError                          one probe step failed (mapped into an observation)
        ├── ProbeTimeoutError (TimeoutError)
        └── ProbeConnectionError (ConnectionError)

Third-party errors are mapped into this tree at one seam each (``monitor.probe.smtp`` for the
network, ``monitor.store.engine`` for the database: every read and write runs in
``Store.reading``/``Store.transaction``) and always raised ``from`` the original exception.
"""

from __future__ import annotations


class RelaycertError(Exception):
    """Base of every error relaycert raises on purpose."""


class ConfigError(RelaycertError, ValueError):
    """The configuration is invalid; the message names the file, the key and the fix."""


class InputFileError(RelaycertError, ValueError):
    """A certificate file could not be read; the message names the file and what was expected."""


class StoreError(RelaycertError):
    """The store could not be opened, migrated or written.  ``unavailable``: for a reason
    outside the data (the database down, restarting or out of disk), so the same write may
    work later."""

    unavailable: bool = False


class StoreGoneError(StoreError):
    """The SQLite file was removed or replaced under a running relaycert: whatever it wrote
    from then on would be lost, so it must stop (or be restarted on the new file)."""


class ProbeError(RelaycertError):
    """A probe step failed.  ``step`` names it (connect, greeting, ehlo, starttls, handshake...)."""

    def __init__(self, step: str, message: str) -> None:
        # the message often quotes a server's reply, attacker-controlled text: no control
        # character of it reaches a log, the store, a report or a terminal
        if not message.isprintable():
            message = "".join(ch if ch.isprintable() else " " for ch in message)
        super().__init__(f"{step}: {message}")
        self.step = step
        self.detail = message


class ProbeTimeoutError(ProbeError, TimeoutError):
    """A probe step did not finish within its timeout."""


class ProbeConnectionError(ProbeError, ConnectionError):
    """The connection was refused, reset or closed by the server."""


class DeliveryError(RelaycertError):
    """A notification channel did not accept a message.

    ``permanent`` errors (4xx, bad credentials, a refused recipient) are not retried;
    ``retry_after`` (seconds) is the channel's own hint for transient ones (HTTP 429).
    """

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class RenewalError(RelaycertError):
    """An ACME renewal step failed (order, challenge, gate, deploy, hook or verification)."""
