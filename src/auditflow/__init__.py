"""AuditFlow: a security-audit detection pipeline (ingest, rules, alerts, API)."""

from __future__ import annotations

__version__ = "0.1.0"
