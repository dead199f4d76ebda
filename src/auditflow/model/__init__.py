"""Contracts between services: events and alerts, exported as JSON Schema under `schemas/`."""

from __future__ import annotations

from auditflow.model.alert import Alert, AlertStatus
from auditflow.model.event import Event, Severity

__all__ = ["Alert", "AlertStatus", "Event", "Severity"]
