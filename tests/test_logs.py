"""Structured logs: one line per event, hostile values escaped, JSON parseable."""

from __future__ import annotations

import json
import logging
import shlex

from monitor.logs import JsonFormatter, KeyValueFormatter, event

EVIL = "CN=x\r\nts=forged level=info event=fake <b>" + "A" * 2000


def render(formatter: logging.Formatter) -> str:
    logger = logging.getLogger("relaycert.test-logs")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        event(logger, logging.INFO, "probe.done", endpoint="mail1", subject=EVIL, skipped=None)
    finally:
        logger.removeHandler(handler)
    return formatter.format(records[0])


def test_key_value_line_cannot_be_forged() -> None:
    line = render(KeyValueFormatter())
    assert "\n" not in line and "\r" not in line
    keys = [token.split("=", 1)[0] for token in shlex.split(line)]
    assert keys == ["ts", "level", "event", "endpoint", "subject"]  # no forged fields
    assert 'subject="CN=x' in line and "skipped" not in line
    assert len(line) < 700  # clipped


def test_json_lines() -> None:
    doc = json.loads(render(JsonFormatter()))
    assert doc["event"] == "probe.done" and doc["endpoint"] == "mail1"
    assert "\n" not in doc["subject"] and len(doc["subject"]) <= 500
