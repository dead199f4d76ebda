"""Presentation helpers shared by the pages and the live stream: list filters from a query string,
time formatting, and the one row shape both the table template and the page script draw."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from auditflow.model.alert import AlertQuery, AlertStatus, AlertSummary
from auditflow.model.event import Severity
from auditflow.model.rule_metadata import is_http_url
from auditflow.model.timeutil import format_utc, to_millis, to_utc, utcnow

SEVERITIES = [Severity.CRITICAL, Severity.ERROR, Severity.WARNING, Severity.INFO]
STATUSES = [AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED]
RANGES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
RANGE_LABELS = {
    "": "Any time",
    "15m": "Last 15 minutes",
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
}
PAGE_SIZE = 50
# ATT&CK ids in Sigma's tag form: techniques `attack.t1110` (sub-technique `attack.t1110.001`),
# groups `attack.g0007`, software `attack.s0002`.
_ATTACK_TAG = re.compile(r"attack\.([tgs])(\d{4})(?:\.(\d{3}))?", re.IGNORECASE)
_ATTACK_PAGES = {"t": "techniques", "g": "groups", "s": "software"}


def attack_url(tag: str) -> str | None:
    """The attack.mitre.org page of an ATT&CK technique, group or software tag; None for any other tag."""
    match = _ATTACK_TAG.fullmatch(tag.strip())
    if match is None:
        return None
    letter, number, sub = match.groups()
    letter = letter.lower()
    if sub and letter != "t":
        return None  # only techniques have sub-ids
    page = f"https://attack.mitre.org/{_ATTACK_PAGES[letter]}/{letter.upper()}{number}/"
    return f"{page}{sub}/" if sub else page


def link_url(value: str) -> str | None:
    """`value` when it is an http(s) URL an analyst may follow, else None (shown as text, never a link)."""
    return value if is_http_url(value) else None


def format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return to_utc(value).strftime("%Y-%m-%d %H:%M:%S")


def time_ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = int(((now or utcnow()) - to_utc(value)).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def _parse_moment(text: str) -> datetime:
    """A `datetime-local` value (taken as UTC) or an RFC 3339 timestamp."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # an offset that moves the value past year 1 or 9999
        raise ValueError(text) from None


def _text(params: QueryParams, name: str, limit: int = 255) -> str:
    return params.get(name, "").strip()[:limit]


@dataclass(slots=True)
class Filters:
    """The alert-list filters as the form shows them, and the AlertQuery they mean."""

    severity: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    rule_id: str = ""
    user_id: str = ""
    server_hostname: str = ""
    range: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: QueryParams) -> Filters:
        known_severities = {str(s) for s in SEVERITIES}
        known_statuses = {str(s) for s in STATUSES}
        return cls(
            severity=[s for s in dict.fromkeys(params.getlist("severity")) if s in known_severities],
            status=[s for s in dict.fromkeys(params.getlist("status")) if s in known_statuses],
            rule_id=_text(params, "rule_id", 128),
            user_id=_text(params, "user_id"),
            server_hostname=_text(params, "server_hostname"),
            range=_text(params, "range") if params.get("range") in RANGES else "",
            since=_text(params, "since", 40),
            until=_text(params, "until", 40),
            q=_text(params, "q", 200),
        )

    @property
    def active(self) -> bool:
        return any(
            (
                self.severity,
                self.status,
                self.rule_id,
                self.user_id,
                self.server_hostname,
                self.range,
                self.since,
                self.until,
                self.q,
            )
        )

    def query(self, *, limit: int = PAGE_SIZE, cursor: str | None = None, now: datetime | None = None) -> AlertQuery:
        since = until = None
        if self.range:
            since = (now or utcnow()) - RANGES[self.range]
        for name in ("since", "until"):
            text = getattr(self, name)
            if not text:
                continue
            try:
                moment = _parse_moment(text)
            except ValueError:
                self.errors.append(f"“{text}” is not a date and time; use the picker or YYYY-MM-DDTHH:MM.")
                continue
            if name == "since":
                since = moment if since is None else max(since, moment)
            else:
                until = moment
        if since and until and since >= until:
            self.errors.append("The start of the time range must be before its end.")
        return AlertQuery(
            severity=[Severity(s) for s in self.severity] or None,
            status=[AlertStatus(s) for s in self.status] or None,
            rule_id=self.rule_id or None,
            user_id=self.user_id or None,
            server_hostname=self.server_hostname or None,
            since=since,
            until=until,
            text=self.q or None,
            limit=limit,
            cursor=cursor,
        )

    def pairs(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = [("severity", s) for s in self.severity]
        items += [("status", s) for s in self.status]
        for name in ("rule_id", "user_id", "server_hostname", "range", "since", "until", "q"):
            value = getattr(self, name)
            if value:
                items.append((name, value))
        return items

    def url(self, **extra: str) -> str:
        """Query string of these filters plus `extra`, starting with `?` (or empty)."""
        pairs = self.pairs() + [(k, v) for k, v in extra.items() if v]
        return "?" + urlencode(pairs) if pairs else ""


def alert_row(alert: AlertSummary, root: str = "", now: datetime | None = None) -> dict[str, Any]:
    """What a table row shows; the page script builds the same row from this JSON."""
    return {
        "id": str(alert.alert_id),
        "url": f"{root}/alerts/{alert.alert_id}",
        "severity": str(alert.severity),
        "status": str(alert.status),
        "rule_name": alert.rule_name,
        "rule_id": alert.rule_id,
        "description": alert.description,
        "user_id": alert.user_id or "",
        "server_hostname": alert.server_hostname or "",
        "occurrences": alert.occurrences,
        "first_seen": format_utc(alert.first_seen),
        "first_seen_ms": to_millis(alert.first_seen),
        "first_seen_text": format_time(alert.first_seen),
        "last_seen": format_utc(alert.last_seen),
        "last_seen_text": format_time(alert.last_seen),
        "last_seen_ago": time_ago(alert.last_seen, now),
    }
