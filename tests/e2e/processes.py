"""Start `auditflow` commands as real processes and talk to them over HTTP: the package's process
harness (shared with `auditflow bench`), under the names the end-to-end tests import."""

from __future__ import annotations

from auditflow.bench.processes import AuditflowProcess, ProcessError, auditflow_env, free_port

__all__ = ["AuditflowProcess", "ProcessError", "auditflow_env", "free_port"]
