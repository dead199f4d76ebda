"""What happened to an alert in a store transaction (new, more occurrences, reopened, resolved), and
the hook that turns those changes into outbox rows inside the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

TransitionKind = Literal["new", "escalation", "reopened", "resolved"]

# The alert as a message shows it: what the list API shows, without the store's bookkeeping.
SNAPSHOT_FIELDS = {
    "alert_id",
    "rule_id",
    "rule_name",
    "rule_kind",
    "severity",
    "status",
    "description",
    "group",
    "user_id",
    "server_hostname",
    "first_seen",
    "last_seen",
    "occurrences",
    "tags",
}


def snapshot(alert: BaseModel, **overrides: Any) -> dict[str, Any]:
    """JSON-ready fields of an `Alert` or `AlertDetail`."""
    return {**alert.model_dump(mode="json", include=SNAPSHOT_FIELDS), **overrides}


@dataclass(frozen=True)
class AlertTransition:
    kind: TransitionKind
    alert_id: UUID
    source: BaseModel  # the `Alert` or `AlertDetail` the change was made from
    status: str  # the alert's status after the change
    previous_occurrences: int
    occurrences: int

    @cached_property
    def alert(self) -> dict[str, Any]:
        """The message's view of the alert, built only for changes some route wants."""
        return snapshot(self.source, status=self.status)


class TransitionHook(Protocol):
    """Called inside the write transaction; whatever it writes commits or rolls back with the alert."""

    async def record(self, conn: AsyncConnection, transitions: Sequence[AlertTransition], now_ms: int) -> None: ...
