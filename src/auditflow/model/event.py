"""The audit event contract: what producers send and what analysis consumes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditflow.model.timeutil import UtcDatetime, utcnow

MAX_DETAILS_BYTES = 64 * 1024
EVENT_TYPE_PATTERN = r"^[a-z0-9_.-]{1,64}$"


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class Event(BaseModel):
    """One audit event. Unknown top-level fields are refused: custom data goes under `details`."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="AuditEvent")

    event_type: str = Field(pattern=EVENT_TYPE_PATTERN, description="e.g. user_login, file_modified")
    event_id: UUID = Field(default_factory=uuid4, description="Generated when absent")
    timestamp: UtcDatetime = Field(default_factory=utcnow, description="Defaults to now")
    source_service: str | None = Field(default=None, max_length=128)
    server_hostname: str | None = Field(default=None, max_length=255)
    user_id: str | None = Field(default=None, max_length=255)
    severity: Severity = Severity.INFO
    action_result: str | None = Field(default=None, max_length=64, description="e.g. SUCCESS, FAILURE")
    details: dict[str, Any] = Field(default_factory=dict, description="Free-form object, at most 64 KiB as JSON")

    @field_validator("details")
    @classmethod
    def _details_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(value))
        if size > MAX_DETAILS_BYTES:
            raise ValueError(f"details is {size} bytes as JSON; the limit is {MAX_DETAILS_BYTES}")
        return value

    def field_value(self, path: str) -> Any:
        """Value at a field name or dotted path into `details` (`details.resource`); None when absent."""
        if not path.startswith("details."):
            return getattr(self, path, None)
        node: Any = self.details
        for part in path.split(".")[1:]:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
