"""The alert-store contract: batched idempotent upserts, filtered keyset listing, triage updates, and
the dead letters of the pipeline."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from auditflow.lifecycle import AsyncLifecycle
from auditflow.model.alert import (
    Alert,
    AlertDetail,
    AlertPage,
    AlertQuery,
    AlertStats,
    AlertUpdate,
)
from auditflow.model.dead_letter import DeadLetterPage

if TYPE_CHECKING:
    from auditflow.backends.store.dead_letters import StoredDeadLetter


@dataclass(slots=True)
class UpsertResult:
    inserted: int
    updated: int
    # Alerts of the batch that were new (inserted), per severity: what notification counts by severity.
    new_by_severity: dict[str, int] = field(default_factory=dict)


class AlertStore(AsyncLifecycle):
    """Lifecycle: `start()` connects (raises BackendUnavailable when down), `aclose()` disposes."""

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def check_schema(self) -> None:
        """Raise SchemaNotReady unless the schema is at the revision this version needs, so that
        readiness says `run auditflow migrate` instead of requests failing on missing tables."""

    @abc.abstractmethod
    async def upsert_alerts(self, alerts: Sequence[Alert]) -> UpsertResult:
        """Write the alerts of one call in one transaction (callers bound its size). Idempotent on
        `alert_id`: a known alert takes occurrences = max, last_seen = max, first_seen = min; its
        events are added once each (by event_id) up to the cap. Its status and history are kept,
        except that a resolved alert whose occurrences grow goes back to open, with a history entry
        by the actor "auditflow"; a redelivery carries no new occurrence and changes neither."""

    @abc.abstractmethod
    async def list_alerts(self, query: AlertQuery) -> AlertPage: ...

    @abc.abstractmethod
    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        """Raises NotFound."""

    @abc.abstractmethod
    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        """Change status and/or add a note, recording the change in the history. Raises NotFound."""

    @abc.abstractmethod
    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats: ...

    @abc.abstractmethod
    async def count(self) -> int: ...

    # --- dead letters ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_dead_letters(self, letters: Sequence[StoredDeadLetter]) -> int:
        """Store letters in one transaction, idempotent on their id; returns how many were new."""

    @abc.abstractmethod
    async def list_dead_letters(self, limit: int, cursor: str | None = None) -> DeadLetterPage:
        """Newest first, keyset-paged; ValueError for a cursor this store did not make."""

    @abc.abstractmethod
    async def take_dead_letters(
        self, ids: Sequence[UUID] | None, limit: int, *, received_until_ms: int | None = None
    ) -> list[StoredDeadLetter]:
        """Up to `limit` letters (the listed ones, or the oldest received until then), whole, for a replay."""

    @abc.abstractmethod
    async def delete_dead_letters(self, ids: Sequence[UUID] | None) -> int:
        """Delete the listed letters, or every one when `ids` is None; returns how many went."""

    @abc.abstractmethod
    async def count_dead_letters(self) -> int: ...
