"""A local capture channel: each message appended to a file (JSON lines) or printed.  The demo
uses it so a newcomer sees what a real run would send."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from notifications.base import DeliveryError, Notification
from notifications.render import subject, text_body
from notifications.settings import CaptureSettings


class CaptureChannel:
    def __init__(self, settings: CaptureSettings, where: str) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        return self.settings.name

    async def send(self, note: Notification) -> None:
        if self.settings.type == "console":
            sys.stdout.write(f"--- {subject(note)}\n{text_body(note)}\n")
            return
        assert self.settings.path is not None
        line = json.dumps({"subject": subject(note), **note.to_dict()}) + "\n"
        try:
            await asyncio.to_thread(_append, self.settings.path, line)
        except OSError as exc:
            raise DeliveryError(
                f"{self.name}: cannot write {self.settings.path}: {exc.strerror}"
            ) from exc


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
