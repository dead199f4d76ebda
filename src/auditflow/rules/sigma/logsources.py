"""The logsource pipeline: which AuditFlow events a Sigma `logsource` means, and where its fields live.

Sigma names log sources by product, category and service and fields by the source's own names
(`a0`, `objectRef.resource`, `CommandLine`). Each `LogSource` below pins the events our parsers make
for one of them (docs/sources.md) and maps its field names to event fields; a field it does not map
makes the rule unsupported instead of silently never matching.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auditflow.rules.sigma.errors import UnsupportedRule

# Sigma's auditd rules test EXECVE arguments as a0, a1, ...; our auditd events keep them as a list.
_EXECVE_ARG = re.compile(r"^a(\d{1,2})$")
K8S_AUDIT = "details.kubernetes.audit"


@dataclass(frozen=True, slots=True)
class FieldTarget:
    """Where a Sigma field is read: an event field path, or the n-th word of a command line."""

    path: str
    position: int | None = None


@dataclass(frozen=True)
class LogSource:
    """One supported Sigma logsource: the events it selects and how its field names map."""

    name: str
    where: Mapping[str, Any]
    fields: Mapping[str, str] = field(default_factory=dict)
    field_prefix: str | None = None
    prefixed: frozenset[str] = frozenset()
    execve_args: bool = False

    def target(self, sigma_field: str) -> FieldTarget:
        if sigma_field in self.fields:
            return FieldTarget(self.fields[sigma_field])
        if self.execve_args and (arg := _EXECVE_ARG.match(sigma_field)):
            return FieldTarget("details.process.command_line", int(arg.group(1)))
        if self.field_prefix is not None and sigma_field.split(".", 1)[0] in self.prefixed:
            return FieldTarget(f"{self.field_prefix}.{sigma_field}")
        raise UnsupportedRule(f"field {sigma_field!r} is not in AuditFlow's {self.name} events")


_SYSLOG_SERVICES = {
    "sshd": ["sshd"],
    "sudo": ["sudo"],
    "su": ["su"],
    # /var/log/auth.log (Debian) or /var/log/secure (RHEL): authentication and account programs
    "auth": ["sshd", "sudo", "su", "accounts"],
    "syslog": ["sshd", "sudo", "su", "accounts", "systemd"],
}
_SYSLOG_FIELDS = {
    "message": "details.message",
    "host": "server_hostname",
    "user": "user_id",
    "pid": "details.process.pid",
}
_AUDITD_FIELDS = {
    "type": "details.audit.records",
    "SYSCALL": "details.event.action",
    "syscall": "details.audit.syscall",
    "exe": "details.audit.exe",
    "comm": "details.audit.comm",
    "key": "details.audit.key",
    "auid": "details.audit.auid",
    "uid": "details.audit.uid",
    "ses": "details.audit.ses",
    "terminal": "details.audit.terminal",
    "success": "details.audit.success",
    "name": "details.file.path",
    "cwd": "details.process.working_directory",
    "pid": "details.process.pid",
    "ppid": "details.process.parent.pid",
    "addr": "details.source.ip",
    "cmd": "details.command",
    "acct": "details.user.target.name",
}
_PROCESS_FIELDS = {
    "Image": "details.process.executable",
    "CommandLine": "details.process.command_line",
    "CurrentDirectory": "details.process.working_directory",
    "User": "user_id",
    "ProcessId": "details.process.pid",
    "ParentProcessId": "details.process.parent.pid",
}
_FILE_FIELDS = {
    "TargetFilename": "details.file.path",
    "Image": "details.process.executable",
    "User": "user_id",
}
_K8S_FIELDS = {"apiGroup": f"{K8S_AUDIT}.objectRef.apiGroup"}
# The top-level keys of an audit.k8s.io/v1 Event as the k8s-audit parser keeps them.
_K8S_AUDIT_KEYS = frozenset(
    {
        "verb",
        "objectRef",
        "user",
        "impersonatedUser",
        "responseStatus",
        "annotations",
        "userAgent",
        "requestURI",
        "sourceIPs",
        "auditID",
        "level",
        "stage",
        "stageTimestamp",
        "requestReceivedTimestamp",
        "requestObject",
    }
)
# Pinning the event types the auditd parser makes (docs/sources.md) lets the rule index skip these
# rules for every other event; `source_service` keeps events of those types from other parsers out.
_AUDITD: Mapping[str, Any] = {
    "event_type": {
        "in": [
            "user_auth",
            "user_login",
            "sudo_command",
            "user_created",
            "user_deleted",
            "process_started",
            "file_modified",
        ]
    },
    "source_service": "auditd",
}
_NOT_K8S: Mapping[str, Any] = {"event_type": {"not": {"equals": "k8s_audit"}}}


def resolve(product: str | None, category: str | None, service: str | None) -> LogSource:
    """The pipeline entry for a rule's logsource, or UnsupportedRule saying why there is none."""
    product = (product or "").lower() or None
    category = (category or "").lower() or None
    service = (service or "").lower() or None
    if product == "kubernetes" and service == "audit" and category in (None, "application"):
        return LogSource("Kubernetes audit", {"event_type": "k8s_audit"}, _K8S_FIELDS, K8S_AUDIT, _K8S_AUDIT_KEYS)
    if product != "linux":
        raise UnsupportedRule(f"logsource product {product!r} has no AuditFlow parser (linux, kubernetes)")
    if category == "process_creation" and service is None:
        return LogSource("process creation", {"event_type": "process_started"}, _PROCESS_FIELDS)
    if category == "file_event" and service is None:
        return LogSource("file event", {"event_type": "file_modified"}, _FILE_FIELDS)
    if category is not None:
        raise UnsupportedRule(f"logsource category {category!r} has no AuditFlow events")
    if service == "auditd":
        return LogSource("auditd", _AUDITD, _AUDITD_FIELDS, execve_args=True)
    if service in _SYSLOG_SERVICES:
        datasets = _SYSLOG_SERVICES[service]
        return LogSource(f"{service} log", {"details.event.dataset": {"in": datasets}}, _SYSLOG_FIELDS)
    if service is None:
        return LogSource("Linux", _NOT_K8S, _SYSLOG_FIELDS)
    raise UnsupportedRule(f"logsource service {service!r} has no AuditFlow parser")
