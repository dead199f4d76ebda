"""The project's exception tree. Backends map driver errors into these at their boundary,
so services never catch aiormq, redis or psycopg errors directly."""

from __future__ import annotations


class AuditFlowError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(AuditFlowError):
    """Settings or a configuration file are invalid or unsafe."""


class RuleError(AuditFlowError):
    """A rule file is invalid; the message names the file, rule id and field."""


class BackendUnavailable(AuditFlowError):
    """A dependency (broker, state, store) cannot be reached; retry later."""


class QueueFull(BackendUnavailable):
    """An in-process queue is at its bound: the caller should retry shortly (HTTP 503 + Retry-After)."""


class SchemaNotReady(BackendUnavailable):
    """The alert store is reachable but its schema is not the revision this version needs."""


class BackendError(AuditFlowError):
    """A dependency answered with an error that retrying will not fix."""


class NotFound(AuditFlowError):
    """The requested object does not exist."""
