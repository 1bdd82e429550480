"""Structured logs: one line per event, ``key=value`` or JSON.

Values are escaped (quotes, control characters) so certificate text or server replies cannot
forge log lines; secrets never reach here (the callers pass no URLs, passwords or keys).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from checks.certinfo import clip


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (``None`` values are left out)."""
    logger.log(level, name, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


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


def setup(fmt: str = "kv", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
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
