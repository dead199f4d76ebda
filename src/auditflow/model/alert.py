"""The alert contract: what analysis publishes and the notification service stores."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from auditflow.model.event import Event, Severity
from auditflow.model.status import RuleInfo
from auditflow.model.timeutil import UtcDatetime

MAX_ALERT_EVENT_IDS = 100
MAX_SAMPLE_EVENTS = 20


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Alert(BaseModel):
    """An alert as published by analysis.

    The same `alert_id` is published again while suppression holds: `occurrences` and `last_seen`
    are absolute values (the state backend counts atomically), so a store applies them with
    max(), which makes redelivery and reordering harmless.
    """

    model_config = ConfigDict(extra="forbid", title="Alert")

    alert_id: UUID
    rule_id: str
    rule_name: str
    rule_kind: str = Field(description="match, threshold or sequence")
    severity: Severity
    status: AlertStatus = AlertStatus.OPEN
    description: str
    group: dict[str, str | None] = Field(default_factory=dict, description="group_by field -> value")
    user_id: str | None = None
    server_hostname: str | None = None
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    occurrences: int = Field(ge=1, description="Matching events attributed to this alert")
    event_ids: list[UUID] = Field(default_factory=list, max_length=MAX_ALERT_EVENT_IDS)
    sample_events: list[Event] = Field(default_factory=list, max_length=MAX_SAMPLE_EVENTS)
    tags: list[str] = Field(default_factory=list)


class AlertSummary(BaseModel):
    """An alert as listed by the API (no evidence attached)."""

    model_config = ConfigDict(title="AlertSummary")

    alert_id: UUID
    rule_id: str
    rule_name: str
    rule_kind: str
    severity: Severity
    status: AlertStatus
    description: str
    group: dict[str, str | None]
    user_id: str | None
    server_hostname: str | None
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    occurrences: int
    tags: list[str]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class AlertChange(BaseModel):
    """One entry of an alert's history: a status change and/or a note."""

    at: UtcDatetime
    actor: str
    from_status: AlertStatus | None
    to_status: AlertStatus | None
    note: str | None


class AlertDetail(AlertSummary):
    """One alert with its evidence and history."""

    model_config = ConfigDict(title="AlertDetail")

    event_ids: list[UUID]
    events: list[Event] = Field(description="Stored triggering events (capped), oldest first")
    history: list[AlertChange]
    rule: RuleInfo | None = Field(
        None,
        description=(
            "The rule with this alert's rule_id as loaded now (references, false positives, origin, tags); "
            "null when no loaded rule has that id any more"
        ),
    )

    def with_rule(self, rule: RuleInfo | None) -> AlertDetail:
        """This detail with the rule it was raised by, looked up in the active rule set."""
        return self.model_copy(update={"rule": rule})


class AlertPage(BaseModel):
    items: list[AlertSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class AlertQuery(BaseModel):
    """Filters for listing alerts; newest (`first_seen`) first, keyset-paginated."""

    severity: list[Severity] | None = None
    rule_id: str | None = None
    status: list[AlertStatus] | None = None
    user_id: str | None = None
    server_hostname: str | None = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    text: str | None = Field(
        None, max_length=200, description="Case-insensitive substring of rule name, description, user or host"
    )
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class CountItem(BaseModel):
    key: str
    label: str | None = None
    count: int


class TimeBucket(BaseModel):
    start: UtcDatetime
    count: int


class AlertStats(BaseModel):
    total: int
    by_severity: dict[str, int]
    by_status: dict[str, int]
    by_rule: list[CountItem]
    top_users: list[CountItem]
    top_hosts: list[CountItem]
    buckets: list[TimeBucket]
    bucket_seconds: int


class AlertUpdate(BaseModel):
    """Body of `PATCH /api/v1/alerts/{alert_id}`, and what every alert store accepts: a status, a
    note or both. A blank note (empty or only whitespace) counts as no note, so it is never stored
    as an empty history entry, whether it came through the API, the dashboard or a store call."""

    model_config = ConfigDict(
        extra="forbid",
        # The rule of `_status_or_note` in the schema, so that clients and fuzzers know it too.
        json_schema_extra={
            "anyOf": [
                {"required": ["status"], "properties": {"status": {"enum": [s.value for s in AlertStatus]}}},
                {"required": ["note"], "properties": {"note": {"type": "string", "pattern": "\\S"}}},
            ]
        },
    )

    status: AlertStatus | None = None
    note: str | None = Field(None, max_length=4000)

    @field_validator("note")
    @classmethod
    def _blank_note_is_no_note(cls, note: str | None) -> str | None:
        return note if note is not None and note.strip() else None

    @model_validator(mode="after")
    def _status_or_note(self) -> AlertUpdate:
        if self.status is None and self.note is None:
            raise PydanticCustomError("value_error", "give a status, a note or both")
        return self
