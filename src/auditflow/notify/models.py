"""What the deliveries API shows of an outbox row."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field
from sqlalchemy import RowMapping

from auditflow.backends.store.schema import from_ms
from auditflow.model.timeutil import UtcDatetime


class DeliveryView(BaseModel):
    delivery_id: UUID = Field(description="Also the receiver's idempotency key")
    alert_id: UUID
    route: str
    channel: str
    event: Literal["new", "escalation", "reopened", "resolved", "digest"] = Field(
        description="`digest`: the alert's change went out bundled with others of its route"
    )
    status: Literal["pending", "sent", "dead"] = Field(description="A digest still collecting changes is pending")
    attempts: int
    next_attempt_at: UtcDatetime | None = Field(description="When a pending delivery is tried next")
    last_error: str | None = Field(description="Why the last attempt failed (for a dead one: why it died)")
    created_at: UtcDatetime
    sent_at: UtcDatetime | None

    @classmethod
    def from_row(cls, row: RowMapping, alert_id: UUID) -> DeliveryView:
        """`alert_id` is the alert asked about: a digest row belongs to all the alerts it bundles."""
        status = "pending" if row["status"] == "open" else row["status"]
        return cls(
            delivery_id=row["delivery_id"],
            alert_id=alert_id,
            route=row["route"],
            channel=row["channel"],
            event=row["event"],
            status=status,
            attempts=row["attempts"],
            next_attempt_at=from_ms(row["next_attempt_at"]) if status == "pending" else None,
            last_error=row["last_error"],
            created_at=from_ms(row["created_at"]),
            sent_at=from_ms(row["sent_at"]) if row["sent_at"] is not None else None,
        )
