"""The role table: which parts each process runs (`auditflow run` all of them, `auditflow serve
<service>` a few), from which the runtime, the API routers and the dashboard are assembled."""

from __future__ import annotations

import enum
from typing import Literal

ServiceName = Literal["run", "generator", "syslog", "analysis", "notification", "dashboard", "dispatcher"]


class Role(enum.Flag):
    """One part of the pipeline that a process may run."""

    INGEST = enum.auto()  # POST /api/v1/events, published to the events queue
    GENERATOR = enum.auto()  # synthetic events through the ingest path, /api/v1/generator
    ANALYSIS = enum.auto()  # events queue -> rules and window state -> alerts queue
    NOTIFICATION = enum.auto()  # alerts queue -> alert store
    ALERTS_API = enum.auto()  # /api/v1/alerts, read from and triaged in this process's store
    RULES = enum.auto()  # /api/v1/rules: the loaded rules and the last reload error
    DASHBOARD = enum.auto()  # the web UI at /, over this process's store or the alerts API
    SYSLOG = enum.auto()  # syslog over UDP, TCP and TLS, parsed and published through the ingest path
    DISPATCHER = enum.auto()  # claims notification outbox rows and sends them (no API of its own)


ROLES: dict[ServiceName, Role] = {
    "run": Role.INGEST
    | Role.GENERATOR
    | Role.ANALYSIS
    | Role.NOTIFICATION
    | Role.ALERTS_API
    | Role.RULES
    | Role.DASHBOARD,
    "generator": Role.INGEST | Role.GENERATOR,
    "syslog": Role.INGEST | Role.SYSLOG,
    "analysis": Role.ANALYSIS | Role.RULES,
    "notification": Role.NOTIFICATION | Role.ALERTS_API | Role.RULES,
    "dashboard": Role.DASHBOARD,
    "dispatcher": Role.DISPATCHER,
}

DEFAULT_PORTS: dict[ServiceName, int] = {
    "run": 8080,
    "generator": 5000,
    "syslog": 5002,  # HTTP (health, metrics, ingest API); syslog itself listens on `syslog_port`
    "analysis": 5001,
    "notification": 8000,
    "dashboard": 8080,
    "dispatcher": 5003,
}

# The backends each role needs.
BROKER_ROLES = Role.INGEST | Role.ANALYSIS | Role.NOTIFICATION
STATE_ROLES = Role.ANALYSIS
STORE_ROLES = Role.NOTIFICATION | Role.ALERTS_API | Role.DISPATCHER
# Roles with token-protected routes; a process with none of them (the dispatcher) serves only
# /healthz, /readyz and /metrics and needs no API token.
API_ROLES = ~Role.DISPATCHER
RULE_FILE_ROLES = Role.ANALYSIS | Role.RULES

# What stops, per role, while the broker is down (in pipeline order).
_BROKER_OUTAGE: tuple[tuple[Role, str], ...] = (
    (Role.INGEST, "events cannot be accepted (503)"),
    (Role.GENERATOR, "the generator pauses"),
    (Role.SYSLOG, "syslog is buffered until full, then TCP senders wait and UDP messages are dropped"),
    (Role.ANALYSIS, "events are not analysed"),
    (Role.NOTIFICATION, "new alerts are not received"),
)


def broker_impact(roles: Role) -> str:
    """What a broker outage means for a process with `roles`, as /readyz reports it."""
    lost = [text for role, text in _BROKER_OUTAGE if role in roles]
    impact = " and ".join([", ".join(lost[:-1]), lost[-1]]) if len(lost) > 1 else "".join(lost)
    if Role.ALERTS_API in roles:
        impact += "; stored alerts are still served"
    return impact


def serves_api(roles: Role) -> bool:
    """Whether a process with `roles` has token-protected routes (and so needs API tokens)."""
    return bool(roles & API_ROLES)


__all__ = ["DEFAULT_PORTS", "ROLES", "Role", "ServiceName", "broker_impact", "serves_api"]
