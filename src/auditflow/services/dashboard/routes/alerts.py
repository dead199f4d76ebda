"""The alert list (filters, keyset pages) and one alert's detail with its triage form."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, HTTPException, Request, status
from starlette.responses import RedirectResponse, Response

from auditflow.errors import AuditFlowError, NotFound
from auditflow.model.alert import AlertStatus, AlertUpdate
from auditflow.model.status import RuleInfo
from auditflow.model.timeutil import to_millis
from auditflow.notify.models import DeliveryView
from auditflow.services.dashboard.context import current_session, get_dashboard, render, root_path
from auditflow.services.dashboard.csrf import CSRF_FIELD, check_csrf
from auditflow.services.dashboard.views import Filters, alert_row

router = APIRouter()
log = logging.getLogger(__name__)

SAVED_MESSAGES = {
    "acknowledged": "Alert acknowledged.",
    "resolved": "Alert resolved.",
    "open": "Alert reopened.",
    "note": "Note added.",
}


def _alert_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(value) from None


async def _rules_for_filter(request: Request) -> list[RuleInfo]:
    # The rule picker is a convenience: without it the list still works (rule ids can be typed).
    try:
        status_ = await get_dashboard(request).source.rules()
    except AuditFlowError:
        return []
    return sorted(status_.rules, key=lambda r: r.name.lower())


@router.get("/alerts")
async def alert_list(request: Request) -> Response:
    dashboard = get_dashboard(request)
    filters = Filters.from_params(request.query_params)
    cursor = request.query_params.get("cursor") or None
    query = filters.query(cursor=cursor)
    rules = await _rules_for_filter(request)
    if filters.errors:
        items, next_cursor = [], None
    else:
        try:
            page = await dashboard.source.list_alerts(query)
            items, next_cursor = page.items, page.next_cursor
        except ValueError:  # the source refused the cursor: a hand-edited or foreign page link
            filters.errors.append("The page link is not valid: open the list again from its first page.")
            items, next_cursor = [], None
    rows = [alert_row(a, root_path(request)) for a in items]
    # Live rows only make sense on the first page of an open-ended view.
    live = cursor is None and query.until is None and not filters.errors
    return render(
        request,
        "alerts.html",
        title="Alerts",
        active="alerts",
        filters=filters,
        rows=rows,
        rules=rules,
        next_url=filters.url(cursor=next_cursor) if next_cursor else None,
        first_url=filters.url() if cursor else None,
        live=live,
        newest_ms=max((to_millis(a.first_seen) for a in items), default=0),
        stream_query=filters.url()[1:],
    )


@router.get("/alerts/{alert_id}")
async def alert_detail(request: Request, alert_id: str) -> Response:
    source = get_dashboard(request).source
    alert = await source.get_alert(_alert_id(alert_id))
    saved = SAVED_MESSAGES.get(request.query_params.get("saved", ""))
    deliveries: list[DeliveryView] | None
    try:
        deliveries = await source.deliveries(alert.alert_id)
    except AuditFlowError as exc:  # the alert itself is shown all the same
        log.warning("dashboard: deliveries of alert %s unavailable: %s", alert.alert_id, exc)
        deliveries = None
    return render(
        request,
        "alert_detail.html",
        title=alert.rule_name,
        active="alerts",
        alert=alert,
        saved=saved,
        error=request.query_params.get("error") == "empty",
        history=list(reversed(alert.history)),
        deliveries=deliveries,
    )


@router.post("/alerts/{alert_id}")
async def update_alert(
    request: Request,
    alert_id: str,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    new_status: Annotated[str, Form(alias="status", max_length=20)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    session = current_session(request)
    check_csrf(session.csrf, csrf_token)
    if not session.can_triage:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Your role is viewer: you can read alerts but not change them.")
    uuid = _alert_id(alert_id)
    source = get_dashboard(request).source
    target = f"{root_path(request)}/alerts/{uuid}"
    try:
        wanted = AlertStatus(new_status) if new_status else None
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Unknown status.") from None
    current = await source.get_alert(uuid)
    change = wanted if wanted is not None and wanted is not current.status else None
    text = note.strip() or None
    if change is None and text is None:
        return RedirectResponse(f"{target}?error=empty", status_code=303)
    await source.update_alert(uuid, AlertUpdate(status=change, note=text), session.user)
    saved = str(change) if change is not None else "note"
    return RedirectResponse(f"{target}?saved={saved}#history", status_code=303)
