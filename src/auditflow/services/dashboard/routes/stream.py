"""Live alerts as Server-Sent Events: the server polls the alert source for alerts newer than the
newest one the page shows, so it behaves the same over the store and over the notification API.
Each round checks the session again, so signing out elsewhere ends an open stream too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from auditflow.errors import AuditFlowError
from auditflow.model.alert import AlertQuery, AlertSummary
from auditflow.model.limits import MAX_EVENT_TIME
from auditflow.model.timeutil import from_millis, to_millis
from auditflow.services.dashboard.context import current_session, get_dashboard, root_path
from auditflow.services.dashboard.gate import live_session
from auditflow.services.dashboard.source import AlertSource
from auditflow.services.dashboard.views import Filters, alert_row

router = APIRouter()
log = logging.getLogger(__name__)

# Alerts reach the store after their first event (a threshold fires at its last event), so an alert
# can arrive with a first_seen older than the newest row shown: look back this far for such late ones.
LOOKBACK_MS = 15 * 60 * 1000
POLL_LIMIT = 200
_LATEST_MS = to_millis(MAX_EVENT_TIME)


def _sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class NewAlertPoller:
    """Finds alerts matching a query that the page has not shown yet."""

    def __init__(self, source: AlertSource, query: AlertQuery, after_ms: int) -> None:
        self._source = source
        self._query = query
        self._after_ms = after_ms
        self._newest_ms = after_ms
        self._known: dict[UUID, int] = {}
        self._first = True

    async def poll(self) -> list[AlertSummary]:
        window_start = from_millis(max(self._newest_ms - LOOKBACK_MS, 0))
        since = window_start if self._query.since is None else max(window_start, self._query.since)
        page = await self._source.list_alerts(
            self._query.model_copy(update={"since": since, "cursor": None, "limit": POLL_LIMIT})
        )
        fresh: list[AlertSummary] = []
        for item in page.items:
            seen_ms = to_millis(item.first_seen)
            if item.alert_id in self._known:
                continue
            self._known[item.alert_id] = seen_ms
            # On the first poll, what is not newer than the newest row shown is on the page already.
            if not (self._first and seen_ms <= self._after_ms):
                fresh.append(item)
        self._first = False
        if self._known:
            self._newest_ms = max(self._newest_ms, *self._known.values())
            horizon = self._newest_ms - LOOKBACK_MS
            self._known = {k: v for k, v in self._known.items() if v >= horizon}
        fresh.sort(key=lambda a: (a.first_seen, str(a.alert_id)))
        return fresh


async def _events(request: Request, poller: NewAlertPoller) -> AsyncIterator[bytes]:
    dashboard = get_dashboard(request)
    session_id = current_session(request).id
    root = root_path(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + dashboard.stream_lifetime
    healthy = True
    yield f"retry: {int(dashboard.poll_interval * 1000) + 1000}\n\n".encode()
    while not dashboard.closing and loop.time() < deadline:
        try:
            if await live_session(dashboard, session_id) is None:
                # Signed out (or the password changed): reconnecting will meet the sign-in gate.
                yield _sse("bye", {"reconnect": True})
                return
            fresh = await poller.poll()
        except AuditFlowError as exc:
            if healthy:
                log.warning("live alerts: polling failed: %s", exc)
            healthy = False
            yield _sse("status", {"ok": False, "message": "Live updates paused: the alert source is unavailable."})
        else:
            if not healthy:
                yield _sse("status", {"ok": True, "message": "Live"})
            healthy = True
            for alert in fresh:
                yield _sse("alert", alert_row(alert, root))
            # A comment line each round: a closed connection shows up as a failed write.
            yield b": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(dashboard.poll_interval)
    yield _sse("bye", {"reconnect": not dashboard.closing})


def _after_ms(text: str) -> int:
    """The page's newest first_seen in epoch ms, within the times an alert can have (anything else,
    from a hand-edited URL, would overflow date arithmetic in every poll)."""
    try:
        value = int(text)
    except ValueError:
        try:
            value = int(float(text))  # scripts write large numbers in exponent form (1e21)
        except (ValueError, OverflowError):
            return 0
    return min(max(value, 0), _LATEST_MS)


@router.get("/events/stream")
async def stream(request: Request) -> Response:
    filters = Filters.from_params(request.query_params)
    query = filters.query()
    poller = NewAlertPoller(get_dashboard(request).source, query, _after_ms(request.query_params.get("after", "")))
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(request, poller), media_type="text/event-stream", headers=headers)
