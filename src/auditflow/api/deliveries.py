"""Notification deliveries of one alert: what was sent where, and what is pending or dead."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from auditflow.api.deps import ReadCaller, StoreDep
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.notify.models import DeliveryView
from auditflow.notify.outbox import list_deliveries

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


@router.get(
    "/{alert_id}/deliveries",
    response_model=list[DeliveryView],
    summary="Notification deliveries of one alert, oldest first, with their status and last error",
    responses={404: {"description": "No such alert"}},
)
async def alert_deliveries(alert_id: UUID, store: StoreDep, _caller: ReadCaller) -> list[DeliveryView]:
    assert isinstance(store, SqlAlertStore)  # the only store there is; the outbox lives in its database
    return await list_deliveries(store, alert_id)
