"""The analysts' web dashboard: sign-in, overview, alert triage with live updates, rules and health."""

from __future__ import annotations

from auditflow.services.dashboard.app import alert_source, build_dashboard, mount_dashboard
from auditflow.services.dashboard.source import AlertSource, HttpAlertSource, LocalAlertSource
from auditflow.services.dashboard.users import (
    Role,
    User,
    UserDirectory,
    ensure_dashboard_users,
    hash_password,
    user_entry,
)

__all__ = [
    "AlertSource",
    "HttpAlertSource",
    "LocalAlertSource",
    "Role",
    "User",
    "UserDirectory",
    "alert_source",
    "build_dashboard",
    "ensure_dashboard_users",
    "hash_password",
    "mount_dashboard",
    "user_entry",
]
