"""The alerts' settings: the ``[alerts]`` table (:class:`AlertsConfig`) and what the lifecycle
is given from it (:class:`AlertSettings`).  Plain data below the configuration, which imports
this module and nothing else of ``monitor.alerts``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import Field

from checks.base import DOCS_BASE, Severity
from monitor.config.common import Model
from monitor.config.units import Duration


@dataclass(frozen=True, slots=True)
class AlertSettings:
    min_severity: Severity = Severity.WARNING
    persist: int = 1
    remind: Mapping[Severity, timedelta] | None = None

    def reminder_after(self, severity: Severity) -> timedelta | None:
        defaults = {
            Severity.CRITICAL: timedelta(days=1),
            Severity.UNKNOWN: timedelta(days=1),
            Severity.WARNING: timedelta(days=7),
        }
        return (self.remind or defaults).get(severity)


class AlertsConfig(Model):
    min_severity: Literal["info", "warning", "unknown", "critical"] = "warning"
    persist: int = Field(default=1, ge=1, le=100)
    remind_critical: Duration = timedelta(days=1)
    remind_warning: Duration = timedelta(days=7)
    remind_info: Duration | None = None
    docs_url: str = DOCS_BASE

    def settings(self) -> AlertSettings:
        remind = {
            Severity.CRITICAL: self.remind_critical,
            Severity.UNKNOWN: self.remind_critical,
            Severity.WARNING: self.remind_warning,
        }
        if self.remind_info is not None:
            remind[Severity.INFO] = self.remind_info
        return AlertSettings(Severity(self.min_severity), self.persist, remind)
