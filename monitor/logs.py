"""Structured logs: one line per event, ``key=value`` or JSON.

Values are escaped (quotes, control characters) so certificate text or server replies cannot
forge log lines; secrets never reach here (the callers pass no URLs, passwords or keys).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from checks.certinfo import clip


def event(
    logger: logging.Logger,
    level: int,
    name: str,
    *,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log the event ``name`` with ``fields`` (``None`` values are left out); ``exc_info``: a
    defect's exception, whose traceback goes with it (one field, one line)."""
    extra = {"fields": {k: v for k, v in fields.items() if v is not None}}
    logger.log(level, name, exc_info=exc_info, extra=extra)


def _kv(value: Any) -> str:
    text = clip(str(value), 500)
    if text and all(ch.isalnum() or ch in "-_.:/@+" for ch in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [
            f"ts={when}",
            f"level={record.levelname.lower()}",
            f"event={_kv(record.getMessage())}",
        ]
        parts += [f"{key}={_kv(value)}" for key, value in fields.items()]
        if record.exc_info:
            parts.append(f"exc={_kv(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "event": clip(record.getMessage(), 500),
            **{
                k: v if isinstance(v, int | float | bool) else clip(str(v), 500)
                for k, v in fields.items()
            },
        }
        return json.dumps(document, ensure_ascii=False)


# syslog priorities for the journal's "<N>" line prefix (sd-daemon(3)).
_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


class JournalFormatter(logging.Formatter):
    """For stderr connected to journald: the priority as a ``<N>`` prefix, no timestamp (the
    journal keeps its own), the fields as the configured format writes them."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        if line.startswith("ts="):
            line = line.split(" ", 1)[1] if " " in line else ""
        elif line.startswith('{"ts": '):
            document = json.loads(line)
            document.pop("ts", None)
            line = json.dumps(document, ensure_ascii=False)
        return f"<{_PRIORITY.get(record.levelname, 6)}>{line}"


def to_journal() -> bool:
    """Is stderr the journal?  systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` of that stream."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


class CommandFormatter(logging.Formatter):
    """A one-shot command's log line: ``relaycert: warning: EVENT key=value ...``, its fields
    escaped as in the daemon's log."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        parts = [f"relaycert: {record.levelname.lower()}: {_kv(record.getMessage())}"]
        parts += [f"{key}={_kv(value)}" for key, value in fields.items()]
        return " ".join(parts)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when it writes (a test's capture, a redirect)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_command() -> None:
    """Before any command runs: relaycert's warnings and errors on stderr, one line each with
    their fields (a CRL that cannot be fetched says which and why), never Python's bare
    message.  The daemon's commands replace it with :func:`setup`."""
    handler = _Stderr()
    handler.setFormatter(CommandFormatter())
    root = logging.getLogger("relaycert")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # A one-shot command's root logger has no handler of its own, so nothing is written twice;
    # whatever the host process attached there (a test's log capture) still sees the records.
    root.propagate = True


def setup(fmt: str = "kv", level: str = "info") -> None:
    """Route relaycert's log (and third-party errors) to stderr in ``fmt``; called again on a
    reload, it switches format and level at once."""
    handler = logging.StreamHandler(sys.stderr)
    inner: logging.Formatter = JsonFormatter() if fmt == "json" else KeyValueFormatter()
    handler.setFormatter(JournalFormatter(inner) if to_journal() else inner)
    root = logging.getLogger("relaycert")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Third-party loggers speak through the same formatter, errors only: APScheduler's
    # "skipped: maximum number of running instances" is expected back-pressure, not news.
    for noisy in ("apscheduler", "httpx", "httpcore", "aiosmtplib", "asyncio"):
        other = logging.getLogger(noisy)
        other.handlers[:] = [handler]
        other.setLevel(logging.ERROR)
        other.propagate = False
