"""List filters, the chart geometry, the live-alert poller, and the CSP hygiene of templates and script."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import pytest
from starlette.datastructures import QueryParams

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.alert import AlertStatus, TimeBucket
from auditflow.model.event import Severity
from auditflow.model.status import Readiness, RulesStatus
from auditflow.model.timeutil import to_millis, utcnow
from auditflow.services.dashboard import LocalAlertSource
from auditflow.services.dashboard.chart import build_chart, nice_ceiling
from auditflow.services.dashboard.routes.stream import NewAlertPoller
from auditflow.services.dashboard.views import Filters, time_ago
from tests.factories import make_alert

PACKAGE = Path(str(files("auditflow.services.dashboard")))
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def test_filters_keep_known_values_and_build_the_query() -> None:
    params = QueryParams(
        "severity=CRITICAL&severity=bogus&severity=CRITICAL&status=open&range=24h&q=%20root%20&rule_id=r1"
    )
    filters = Filters.from_params(params)
    assert filters.severity == ["CRITICAL"]
    query = filters.query(now=NOW)
    assert query.severity == [Severity.CRITICAL]
    assert query.status == [AlertStatus.OPEN]
    assert query.since == NOW - timedelta(hours=24)
    assert query.text == "root"
    assert query.rule_id == "r1"
    assert filters.active
    assert Filters.from_params(QueryParams(filters.url()[1:])) == filters


def test_explicit_times_are_utc_and_checked() -> None:
    filters = Filters.from_params(QueryParams("since=2026-03-01T10:00&until=2026-03-01T11:00Z"))
    query = filters.query(now=NOW)
    assert query.since == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert query.until == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert not filters.errors
    backwards = Filters.from_params(QueryParams("since=2026-03-01T12:00&until=2026-03-01T11:00"))
    backwards.query(now=NOW)
    assert backwards.errors == ["The start of the time range must be before its end."]


def test_empty_filters_are_inactive_and_have_no_query_string() -> None:
    filters = Filters.from_params(QueryParams(""))
    assert not filters.active
    assert filters.url() == ""
    assert filters.url(cursor="abc") == "?cursor=abc"


def test_time_ago() -> None:
    assert time_ago(NOW - timedelta(seconds=5), NOW) == "just now"
    assert time_ago(NOW - timedelta(minutes=3), NOW) == "3m ago"
    assert time_ago(NOW - timedelta(days=2, hours=5), NOW) == "2d ago"
    assert time_ago(None) == ""


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (420, 500)])
def test_nice_ceiling(value: int, expected: int) -> None:
    assert nice_ceiling(value) == expected


def test_chart_has_a_bar_per_bucket_and_scales_to_the_peak() -> None:
    since = NOW - timedelta(hours=24)
    start = datetime(2026, 2, 28, 13, 0, tzinfo=UTC)
    buckets = [TimeBucket(start=start, count=3), TimeBucket(start=start + timedelta(hours=5), count=4)]
    chart = build_chart(buckets, since, NOW, 3600)
    assert len(chart.bars) == 25  # 12:00 (partial) ... 12:00 next day (current)
    counts = [bar.count for bar in chart.bars]
    assert counts[1] == 3
    assert counts[6] == 4
    assert chart.total == 7
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.y == pytest.approx(chart.y_ticks[-1].position)
    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4"]
    assert all(bar.height == 0 for bar in chart.bars if bar.count == 0)
    assert chart.as_json()["bars"][1]["count"] == 3


def test_chart_ignores_buckets_outside_the_period() -> None:
    chart = build_chart([TimeBucket(start=NOW - timedelta(days=3), count=9)], NOW - timedelta(hours=1), NOW, 600)
    assert chart.total == 0
    assert chart.peak == 0


async def test_poller_sends_new_and_late_alerts_once(alert_store: SqlAlertStore) -> None:
    now = utcnow()
    shown = make_alert(first_seen=now - timedelta(minutes=2))
    await alert_store.upsert_alerts([shown])
    source = LocalAlertSource(alert_store, lambda: RulesStatus(rules=[], version="v1"), _not_asked)
    poller = NewAlertPoller(source, Filters().query(), to_millis(shown.first_seen))
    newer = make_alert(first_seen=now - timedelta(minutes=1))
    await alert_store.upsert_alerts([newer])
    assert [a.alert_id for a in await poller.poll()] == [newer.alert_id]
    assert await poller.poll() == []
    # A threshold alert is stored after its first event: older than the newest row, yet new to the page.
    late = make_alert(first_seen=now - timedelta(minutes=5))
    await alert_store.upsert_alerts([late])
    assert [a.alert_id for a in await poller.poll()] == [late.alert_id]
    assert await poller.poll() == []


async def _not_asked() -> Readiness:
    raise AssertionError("the poller reads alerts only")


def _templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in (PACKAGE / "templates").glob("*.html")}


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"\sstyle\s*=", "inline style attributes break the CSP"),
        (r"<style", "inline style blocks break the CSP"),
        (r"<script(?![^>]*\ssrc=)", "inline scripts break the CSP"),
        (r"\son[a-z]+\s*=", "inline event handlers break the CSP"),
        (r"\|\s*safe\b", "|safe on data would bypass escaping"),
        (r"autoescape\s+false", "escaping must stay on"),
        (r"https?://(?!www\.w3\.org)", "no CDN or external resource: the product runs air-gapped"),
    ],
)
def test_templates_respect_the_content_security_policy(pattern: str, why: str) -> None:
    offenders = [name for name, text in _templates().items() if re.search(pattern, text, re.IGNORECASE)]
    assert offenders == [], why


def test_script_never_parses_data_as_html() -> None:
    script = (PACKAGE / "static" / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
