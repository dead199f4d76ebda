"""Read-only pages: the overview (counts, alerts over time, top rules, users and hosts), the loaded
rules and the health of the dependencies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from auditflow.model.alert import AlertQuery, AlertStats
from auditflow.model.timeutil import from_millis, to_millis, utcnow
from auditflow.services.dashboard.chart import Chart, build_chart
from auditflow.services.dashboard.context import get_dashboard, render, root_path
from auditflow.services.dashboard.views import SEVERITIES, STATUSES, alert_row

router = APIRouter()

# Period shown on the overview -> (length, bucket seconds): 24 hourly bars, or 28 six-hour bars.
PERIODS = {"24h": (timedelta(hours=24), 3600), "7d": (timedelta(days=7), 6 * 3600)}
PERIOD_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days"}
RECENT = 8


def _period(request: Request) -> str:
    value = request.query_params.get("range", "24h")
    return value if value in PERIODS else "24h"


async def _overview_data(request: Request, period: str) -> tuple[AlertStats, Chart, datetime]:
    length, bucket_seconds = PERIODS[period]
    until = utcnow()
    # Start on a bucket boundary so every bar but the current one covers a whole bucket.
    step = bucket_seconds * 1000
    since = from_millis((to_millis(until - length) // step + 1) * step)
    stats = await get_dashboard(request).source.stats(since, until, bucket_seconds)
    return stats, build_chart(stats.buckets, since, until, bucket_seconds), since


def _counts(stats: AlertStats) -> dict[str, int]:
    counts = {str(s): stats.by_severity.get(str(s), 0) for s in SEVERITIES}
    counts.update({str(s): stats.by_status.get(str(s), 0) for s in STATUSES})
    counts["total"] = stats.total
    return counts


@router.get("/")
async def overview(request: Request) -> Response:
    period = _period(request)
    stats, chart, _ = await _overview_data(request, period)
    recent = await get_dashboard(request).source.list_alerts(AlertQuery(limit=RECENT))
    return render(
        request,
        "overview.html",
        title="Overview",
        active="overview",
        period=period,
        periods=PERIOD_LABELS,
        stats=stats,
        counts=_counts(stats),
        chart=chart,
        recent=[alert_row(a, root_path(request)) for a in recent.items],
        top_max=max([c.count for c in (*stats.by_rule, *stats.top_users, *stats.top_hosts)] or [1]),
    )


@router.get("/overview/data.json")
async def overview_data(request: Request) -> Response:
    """The numbers behind the overview, for the page script's periodic refresh."""
    stats, chart, _ = await _overview_data(request, _period(request))
    payload: dict[str, Any] = {"counts": _counts(stats), "chart": chart.as_json()}
    return JSONResponse(payload)


@router.get("/rules")
async def rules(request: Request) -> Response:
    status = await get_dashboard(request).source.rules()
    ordered = sorted(status.rules, key=lambda r: (not r.enabled, -r.severity.rank, r.id))
    return render(request, "rules.html", title="Rules", active="rules", status=status, rules=ordered)


@router.get("/health")
async def health(request: Request) -> Response:
    readiness = await get_dashboard(request).source.readiness()
    ordered = sorted(readiness.dependencies, key=lambda d: (d.status == "up", not d.critical, d.name))
    return render(request, "health.html", title="Health", active="health", readiness=readiness, dependencies=ordered)
