"""The audit event contract: what producers send and what analysis consumes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from auditflow.model.limits import (
    MAX_DETAILS_DEPTH,
    TIME_BOUNDS_CONTEXT,
    EventTimeBounds,
    check_text,
    details_problem,
    json_problem,
    timestamp_problem,
)
from auditflow.model.timeutil import Rfc3339Datetime, utcnow

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
    timestamp: Rfc3339Datetime = Field(default_factory=utcnow, description="Defaults to now")
    source_service: str | None = Field(default=None, max_length=128)
    server_hostname: str | None = Field(default=None, max_length=255)
    user_id: str | None = Field(default=None, max_length=255)
    severity: Severity = Severity.INFO
    action_result: str | None = Field(default=None, max_length=64, description="e.g. SUCCESS, FAILURE")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"Free-form object, at most 64 KiB as JSON and {MAX_DETAILS_DEPTH} levels deep; integers fit in"
            " 64 bits; no text holds NUL"
        ),
    )

    @field_validator("source_service", "server_hostname", "user_id", "action_result")
    @classmethod
    def _storable_text(cls, value: str | None) -> str | None:
        return check_text(value) if value is not None else None

    @field_validator("timestamp")
    @classmethod
    def _time_in_bounds(cls, value: datetime, info: ValidationInfo) -> datetime:
        problem = timestamp_problem(value)
        if problem is None and info.context:
            bounds: EventTimeBounds | None = info.context.get(TIME_BOUNDS_CONTEXT)
            problem = bounds.problem(value) if bounds is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("details")
    @classmethod
    def _details_storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:  # too deep, a surrogate, a huge integer: say where
            raise ValueError(json_problem(value) or f"details cannot be encoded as JSON: {exc}") from None
        if len(encoded) > MAX_DETAILS_BYTES:
            raise ValueError(f"details is {len(encoded)} bytes as JSON; the limit is {MAX_DETAILS_BYTES}")
        problem = details_problem(value, encoded)
        if problem is not None:
            raise ValueError(problem)
        return value

    def field_value(self, path: str) -> Any:
        """Value at a field name or dotted path into `details` (`details.resource`); None when absent.
        A path through a list of objects yields the values of its elements (`through_list`)."""
        if not path.startswith("details."):
            return getattr(self, path, None)
        node: Any = self.details
        parts = path.split(".")[1:]
        for position, part in enumerate(parts):
            if isinstance(node, list):
                return through_list(node, parts[position:])
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def through_list(items: list[Any], keys: list[str]) -> list[Any] | None:
    """A path that reaches a list of objects goes on in each element: the values found, lists among
    them flattened (`spec.volumes.hostPath` of a pod), or None when no element has the rest of the
    path. A value test then holds when it holds for one of them."""
    found: list[Any] = []
    for item in items:
        node: Any = item
        for position, key in enumerate(keys):
            if node.__class__ is list:
                node = through_list(node, keys[position:])
                break
            if node.__class__ is not dict:
                node = None
                break
            node = node.get(key)
        if node.__class__ is list:
            found.extend(node)
        elif node is not None:
            found.append(node)
    return found or None
