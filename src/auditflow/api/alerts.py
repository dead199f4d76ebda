"""Alerts: filtered keyset listing, detail with evidence, triage updates with history, statistics."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status

from auditflow.api.deps import ReadCaller, RuntimeDep, StoreDep, TriageCaller
from auditflow.model.alert import (
    AlertDetail,
    AlertPage,
    AlertQuery,
    AlertStats,
    AlertStatus,
    AlertUpdate,
)
from auditflow.model.event import Severity
from auditflow.model.timeutil import Rfc3339Datetime

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


@router.get("", response_model=AlertPage, summary="List alerts, newest first, with filters and a keyset cursor")
async def list_alerts(
    store: StoreDep,
    _caller: ReadCaller,
    severity: Annotated[list[Severity] | None, Query(description="Repeat to match several")] = None,
    status_: Annotated[list[AlertStatus] | None, Query(alias="status", description="Repeat to match several")] = None,
    rule_id: str | None = None,
    user_id: str | None = None,
    server_hostname: str | None = None,
    since: Annotated[Rfc3339Datetime | None, Query(description="first_seen at or after (RFC 3339)")] = None,
    until: Annotated[Rfc3339Datetime | None, Query(description="first_seen before (RFC 3339)")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Free text over rule, description, user, host")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> AlertPage:
    query = AlertQuery(
        severity=severity,
        status=status_,
        rule_id=rule_id,
        user_id=user_id,
        server_hostname=server_hostname,
        since=since,
        until=until,
        text=q,
        limit=limit,
        cursor=cursor,
    )
    try:
        return await store.list_alerts(query)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
        ) from None


@router.get("/stats", response_model=AlertStats, summary="Counts by severity, status, rule, user, host and time")
async def alert_stats(
    store: StoreDep,
    _caller: ReadCaller,
    since: Annotated[Rfc3339Datetime | None, Query(description="first_seen at or after (RFC 3339)")] = None,
    until: Annotated[Rfc3339Datetime | None, Query(description="first_seen before (RFC 3339)")] = None,
    bucket_seconds: Annotated[int, Query(ge=60, le=7 * 86400)] = 3600,
) -> AlertStats:
    try:
        return await store.stats(since, until, bucket_seconds)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "bucket_seconds"], "msg": str(exc), "type": "value_error"}],
        ) from None


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with its triggering events and history",
    responses={404: {"description": "No such alert"}},
)
async def get_alert(alert_id: UUID, store: StoreDep, runtime: RuntimeDep, _caller: ReadCaller) -> AlertDetail:
    detail = await store.get_alert(alert_id)
    return detail.with_rule(runtime.rule_info(detail.rule_id))


@router.patch(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="Change the status and/or add a note; the change is kept in the history",
    responses={404: {"description": "No such alert"}},
)
async def update_alert(
    alert_id: UUID, update: AlertUpdate, store: StoreDep, runtime: RuntimeDep, caller: TriageCaller
) -> AlertDetail:
    detail = await store.update_alert(alert_id, update, caller.actor)
    return detail.with_rule(runtime.rule_info(detail.rule_id))
