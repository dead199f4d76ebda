"""What a notification says, shared by the channels written for people (Slack, email, apprise): a
headline, a sentence about the event, the alert's facts and a digest's lines, for every payload shape
(a single alert change, a digest, a test message). Each channel escapes and lays these out itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ELLIPSIS = "…"
DIGEST_ITEMS = 50  # lines a digest lists before "and N more" (Slack lists fewer)


def one_line(value: str) -> str:
    """Runs of whitespace (line breaks included) as one space: for subjects, headers and list lines."""
    return re.sub(r"\s+", " ", value).strip()


def clip(value: str, limit: int) -> str:
    """`value` cut to at most `limit` characters, the cut marked with an ellipsis."""
    return value if len(value) <= limit else value[: max(limit - 1, 0)] + ELLIPSIS


def show(value: Any) -> str:
    """An alert value as text: a group's fields as `key=value`, a list joined, nothing as a dash."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={show(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(show(item) for item in value)
    return str(value)


def is_digest(payload: dict[str, Any]) -> bool:
    return payload.get("event") == "digest"


def _where(alert: dict[str, Any]) -> str:
    host = alert.get("server_hostname")
    return f" on {host}" if host else ""


def _note(payload: dict[str, Any]) -> str:
    if payload["event"] == "escalation":
        return f"escalation, {payload['alert'].get('occurrences')} occurrences"
    return str(payload["event"])


def headline(payload: dict[str, Any]) -> str:
    """`CRITICAL ssh-brute-force on web-1 (new)`, or `Digest: 12 alert changes (route soc)`; one line."""
    if is_digest(payload):
        count = int(payload.get("count", len(payload.get("items", []))))
        return one_line(f"Digest: {count} alert change{'s' if count != 1 else ''} (route {payload.get('route')})")
    alert = payload["alert"]
    return one_line(f"{alert.get('severity')} {alert.get('rule_id')}{_where(alert)} ({_note(payload)})")


def intro(payload: dict[str, Any]) -> str:
    """One sentence saying what happened."""
    event = payload["event"]
    if event == "digest":
        return f"Alert changes from {payload.get('window_start')} to {payload.get('window_end')}."
    alert = payload["alert"]
    occurrences = alert.get("occurrences")
    return {
        "new": "A new alert was raised.",
        "escalation": f"The alert grew from {payload.get('previous_occurrences')} to {occurrences} occurrences.",
        "reopened": "New activity reopened an alert that had been resolved.",
        "resolved": "The alert was resolved.",
        "test": "This is a test message from AuditFlow: the alert below is a sample, nothing happened.",
    }.get(event, f"Alert event: {event}.")


def facts(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """The alert's fields every channel shows, as (label, text)."""
    return [
        ("Rule id", show(alert.get("rule_id"))),
        ("Group", show(alert.get("group"))),
        ("Host", show(alert.get("server_hostname"))),
        ("User", show(alert.get("user_id"))),
        ("Occurrences", show(alert.get("occurrences"))),
        ("First seen", show(alert.get("first_seen"))),
        ("Last seen", show(alert.get("last_seen"))),
        ("Status", show(alert.get("status"))),
    ]


@dataclass(frozen=True, slots=True)
class DigestLine:
    text: str  # one line: severity, rule, host, name, event, occurrences
    url: str | None


def digest_lines(payload: dict[str, Any], limit: int = DIGEST_ITEMS) -> tuple[list[DigestLine], int]:
    """The first `limit` items of a digest as lines, and how many more there are."""
    items: list[dict[str, Any]] = list(payload.get("items") or [])
    lines = []
    for item in items[:limit]:
        alert = item.get("alert") or {}
        text = (
            f"{alert.get('severity')} {alert.get('rule_id')}{_where(alert)}: {alert.get('rule_name')} "
            f"({item.get('event')}, {alert.get('occurrences')} occurrences)"
        )
        lines.append(DigestLine(one_line(text), item.get("alert_url")))
    total = max(int(payload.get("count", len(items))), len(items))
    return lines, total - len(lines)


def plain_text(payload: dict[str, Any], delivery_id: str) -> str:
    """The whole message as plain text: the email's text part, the apprise body in text format."""
    out = [headline(payload), "", intro(payload)]
    if is_digest(payload):
        lines, more = digest_lines(payload)
        out.append("")
        for line in lines:
            out.append(f"- {line.text}" + (f"\n  {line.url}" if line.url else ""))
        if more:
            out.append(f"and {more} more")
    else:
        alert = payload["alert"]
        out += ["", f"{alert.get('rule_name')}: {show(alert.get('description'))}", ""]
        width = max(len(label) for label, _ in facts(alert))
        out += [f"{label + ':':<{width + 1}} {value}" for label, value in facts(alert)]
        if payload.get("alert_url"):
            out += ["", f"Open the alert: {payload['alert_url']}"]
    out += ["", f"Route: {payload.get('route') or '-'} · delivery {delivery_id}"]
    return "\n".join(out) + "\n"
