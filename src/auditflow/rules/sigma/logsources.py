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

# Sigma's auditd rules name record fields: a0, a1, ... are the EXECVE arguments, and in SYSCALL
# records the first four system call arguments (hex, as audit writes them).
_ARG = re.compile(r"^a(\d{1,2})$")
SYSCALL_ARGS = 4
K8S_AUDIT = "details.kubernetes.audit"


@dataclass(frozen=True)
class LogSource:
    """One supported Sigma logsource: the events it selects and how its field names map.

    A field maps to one event field, or to several when the value may be found in any of them
    (a pod's capabilities in its containers or its init containers)."""

    name: str
    where: Mapping[str, Any]
    fields: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    field_prefix: str | None = None
    prefixed: frozenset[str] = frozenset()
    audit_args: bool = False

    def targets(self, sigma_field: str, record: str | None = None) -> tuple[str, ...]:
        """The event fields a Sigma field is read from; the field holds when one of them does.
        `record` is the audit record type the rule's selection pins, if one: whose `aN` it is."""
        mapped = self.fields.get(sigma_field)
        if mapped is not None:
            return (mapped,) if isinstance(mapped, str) else mapped
        if self.audit_args and (arg := _ARG.match(sigma_field)):
            execve, syscall = f"details.audit.execve.{sigma_field}", f"details.audit.{sigma_field}"
            position = int(arg.group(1))
            if record == "EXECVE":
                return (execve,)
            if record == "SYSCALL":
                if position >= SYSCALL_ARGS:
                    raise UnsupportedRule(f"field {sigma_field!r}: a SYSCALL record has the arguments a0 to a3")
                return (syscall,)
            return (execve, syscall) if position < SYSCALL_ARGS else (execve,)
        if self.field_prefix is not None and sigma_field.split(".", 1)[0] in self.prefixed:
            return (f"{self.field_prefix}.{sigma_field}",)
        raise UnsupportedRule(f"field {sigma_field!r} is not in AuditFlow's {self.name} events")


# Sigma services of syslog programs -> `event.dataset` of their events: a program parser's family
# (`sshd`, `accounts`, ...) or, for programs without a parser, the program name in lower case
# (the generic `syslog_message` events, docs/sources.md).
_SYSLOG_SERVICES = {
    "sshd": ["sshd"],
    "sudo": ["sudo"],
    "su": ["su"],
    # /var/log/auth.log (Debian) or /var/log/secure (RHEL): authentication and account programs
    "auth": ["sshd", "sudo", "su", "accounts", "login", "systemd-logind", "polkitd", "pkexec", "cron", "passwd"],
    "cron": ["cron", "crond", "crontab", "anacron"],
    "vsftpd": ["vsftpd"],
    "clamav": ["clamd", "freshclam", "clamav-milter", "clamonacc"],
    # guacd logs the connections; the web application (in Tomcat) logs as guacamole when sent to syslog
    "guacamole": ["guacd", "guacamole"],
}
_SYSLOG_FIELDS = {
    "message": "details.message",
    "host": "server_hostname",
    "user": "user_id",
    "pid": "details.process.pid",
}
# sudo's own names for the parts of its command line (`USER=root ; COMMAND=/usr/bin/id`)
_SUDO_FIELDS = {
    **_SYSLOG_FIELDS,
    "USER": "details.user.target.name",
    "COMMAND": "details.command",
    # sudo's working directory, not a password:
    "PWD": "details.process.working_directory",  # nosec B105  # pragma: allowlist secret
    "TTY": "details.tty",
}
_AUDITD_FIELDS = {
    "type": "details.audit.records",
    "SYSCALL": "details.event.action",
    **{
        name: f"details.audit.{name}"
        for name in (
            "syscall", "arch", "exe", "comm", "key", "auid", "uid", "euid", "suid", "fsuid", "gid", "egid",
            "sgid", "fsgid", "ses", "tty", "terminal", "success", "exit", "unit", "nametype", "res",
        )
    },
    "name": "details.file.path",
    "cwd": "details.process.working_directory",
    "pid": "details.process.pid",
    "ppid": "details.process.parent.pid",
    "addr": "details.source.ip",
    "cmd": "details.command",
    "acct": "details.user.target.name",
}  # fmt: skip
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
_NETWORK_FIELDS = {
    "Image": "details.process.executable",
    "DestinationIp": "details.destination.ip",
    "DestinationPort": "details.destination.port",
    "Initiated": "details.network.initiated",
    "User": "user_id",
    "ProcessId": "details.process.pid",
}
_K8S_FIELDS: dict[str, str | tuple[str, ...]] = {
    "apiGroup": f"{K8S_AUDIT}.objectRef.apiGroup",
    # Fields of the pod spec in the request object (lists are searched element by element).
    "hostPath": f"{K8S_AUDIT}.requestObject.spec.volumes.hostPath",
    "capabilities": tuple(
        f"{K8S_AUDIT}.requestObject.spec.{containers}.securityContext.capabilities"
        for containers in ("containers", "initContainers", "ephemeralContainers")
    ),
}
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
            "audit_syscall",
            "service_state_change",
            "network_connection",
        ]
    },
    "source_service": "auditd",
}
_NOT_K8S: Mapping[str, Any] = {"event_type": {"not": {"equals": "k8s_audit"}}}
# `service: syslog`: whatever syslog (or journald) carried, the programs with a parser and without.
_SYSLOG: Mapping[str, Any] = {**_NOT_K8S, "source_service": {"not": {"in": ["auditd", "kube-apiserver"]}}}


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
    if category == "network_connection" and service is None:
        return LogSource("network connection", {"event_type": "network_connection"}, _NETWORK_FIELDS)
    if category is not None:
        raise UnsupportedRule(f"logsource category {category!r} has no AuditFlow events")
    if service == "auditd":
        return LogSource("auditd", _AUDITD, _AUDITD_FIELDS, audit_args=True)
    if service == "syslog":
        return LogSource("syslog", _SYSLOG, _SYSLOG_FIELDS)
    if service in _SYSLOG_SERVICES:
        datasets = _SYSLOG_SERVICES[service]
        fields = _SUDO_FIELDS if service == "sudo" else _SYSLOG_FIELDS
        return LogSource(f"{service} log", {"details.event.dataset": {"in": datasets}}, fields)
    if service is None:
        return LogSource("Linux", _NOT_K8S, _SYSLOG_FIELDS)
    raise UnsupportedRule(f"logsource service {service!r} has no AuditFlow parser")
