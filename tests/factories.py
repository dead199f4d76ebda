"""Test data shared by the suites: events, alerts (as the store receives them and as it returns them)
and window-state ops, with defaults that make a plausible failed-login burst."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from auditflow.backends.state import WindowOp
from auditflow.backends.state.base import RuleKind
from auditflow.model.alert import Alert, AlertChange, AlertDetail, AlertStatus
from auditflow.model.event import Event, Severity
from auditflow.model.status import RuleInfo
from auditflow.model.timeutil import utcnow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- events and alerts -----------------------------------------------------------------------


def make_event(at: datetime = T0, **fields: Any) -> Event:
    """A failed login at `at`; any Event field can be overridden."""
    values: dict[str, Any] = {"event_type": "user_login", "action_result": "FAILURE"}
    values.update(fields)
    return Event(timestamp=at, **values)


def make_alert(
    alert_id: UUID | None = None,
    *,
    first_seen: datetime = T0,
    last_seen: datetime | None = None,
    occurrences: int = 3,
    events: list[Event] | None = None,
    event_ids: list[UUID] | None = None,
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> Alert:
    """A failed-login-burst alert for alice on web-1 with three sample events a millisecond apart;
    any Alert field can be overridden. The default events carry the alert's user, host and `details`,
    so that what a page shows of an event can be checked too."""
    values: dict[str, Any] = {
        "rule_id": "failed-login-burst",
        "rule_name": "Failed login burst",
        "rule_kind": "threshold",
        "severity": Severity.WARNING,
        "description": "3 failed logins for alice on web-1",
        "group": {"user_id": "alice", "server_hostname": "web-1"},
        "user_id": "alice",
        "server_hostname": "web-1",
        "tags": ["auth"],
    }
    values.update(fields)
    if events is None:
        events = [
            make_event(
                first_seen + timedelta(milliseconds=i),
                user_id=values["user_id"],
                server_hostname=values["server_hostname"],
                details=details or {},
            )
            for i in range(3)
        ]
    return Alert(
        alert_id=alert_id or uuid4(),
        first_seen=first_seen,
        last_seen=last_seen or first_seen,
        occurrences=occurrences,
        sample_events=events,
        event_ids=event_ids if event_ids is not None else [event.event_id for event in events],
        **values,
    )


def alert_detail(
    alert: Alert, *, status: AlertStatus = AlertStatus.OPEN, history: Sequence[AlertChange] = ()
) -> AlertDetail:
    """The alert as the store or the API returns it, stored when it was first seen."""
    fields = alert.model_dump(exclude={"sample_events", "status"})
    return AlertDetail(
        **fields,
        status=status,
        created_at=alert.first_seen,
        updated_at=alert.first_seen,
        events=alert.sample_events,
        history=list(history),
    )


def alert_for_rule(
    rule: RuleInfo,
    *,
    user: str | None,
    host: str | None,
    minutes_ago: float,
    details: dict[str, Any] | None = None,
    occurrences: int = 1,
) -> Alert:
    """An alert of `rule` whose last hit was `minutes_ago` before now, with up to three sample events
    of the kind the rule watches."""
    seen = utcnow() - timedelta(minutes=minutes_ago)
    events = [
        make_event(
            seen - timedelta(seconds=i),
            event_type="user_login" if "login" in rule.id else "file_modified",
            user_id=user,
            server_hostname=host,
            severity=rule.severity,
            source_service="sshd",
            details=details or {"resource": "/etc/shadow", "ip": f"10.0.3.{i + 20}"},
        )
        for i in range(min(occurrences, 3))
    ]
    return make_alert(
        rule_id=rule.id,
        rule_name=rule.name,
        rule_kind=rule.kind,
        severity=rule.severity,
        description=f"{rule.description} ({user or 'unknown user'} on {host or 'unknown host'})",
        group={k: {"user_id": user, "server_hostname": host}.get(k) for k in rule.group_by},
        user_id=user,
        server_hostname=host,
        first_seen=seen - timedelta(seconds=len(events)),
        last_seen=seen,
        occurrences=occurrences,
        events=events,
        tags=rule.tags,
    )


# --- window-state ops ------------------------------------------------------------------------


def op(
    kind: RuleKind,
    event_id: str,
    ts: int,
    *,
    rule: str = "r1",
    group: str = "g1",
    window: int = 1_000,
    suppress: int = 60_000,
    count: int = 1,
    steps: tuple[int, ...] = (),
    matched: tuple[int, ...] = (),
    distinct: str | None = None,
    ordered: bool = True,
) -> WindowOp:
    """An op whose payload and would-be alert id are derived from the event id."""
    return WindowOp(
        rule, group, kind, event_id, ts, f"payload-{event_id}".encode(), window, suppress, f"alert-{event_id}",
        count, steps, matched, distinct, ordered,
    )  # fmt: skip


ALL_KINDS: tuple[RuleKind, ...] = ("match", "threshold", "sequence")
# Timestamps an attacker or a broken clock may send: year 1, the epoch, 2286 and the end of 9999.
FAR_TIMESTAMPS = (-62_135_596_800_000, 0, 10**13, 253_402_300_799_999)


@st.composite
def op_batches(
    draw: st.DrawFn,
    kinds: Sequence[RuleKind] = ALL_KINDS,
    focus: bool = False,
    adversarial: bool = False,
    unordered: bool = False,
) -> list[list[WindowOp]]:
    """Random batches over up to three rules (match, threshold, sequence) and two groups, with small
    windows, repeated event ids and timestamps that go back as well as forward; then some batches
    (or their tails) delivered again later, alone or joined to the next, as after a crash. `focus`
    leaves out what makes chains impossible or replays absent: empty windows, single steps, no
    suppression. `adversarial` adds events dated far from the others and makes the threshold count
    distinct values of a few. `unordered` makes the sequence one whose steps may happen in any order."""
    windows = st.sampled_from([5, 30] if focus else [0, 5, 30])
    suppressions = st.sampled_from([10, 40] if focus else [0, 10, 40])
    steps = tuple(draw(st.lists(st.integers(1, 2), min_size=2 if focus else 1, max_size=3)))
    count = draw(st.integers(1, 4))
    config = {kind: (draw(windows), draw(suppressions)) for kind in ("match", "threshold", "sequence")}
    distinct_rule = adversarial and draw(st.booleans())
    ops: list[WindowOp] = []
    ts = 1_000
    for _ in range(draw(st.integers(1, 60))):
        kind: RuleKind = draw(st.sampled_from(kinds))
        window, suppress = config[kind]
        ts = max(0, ts + draw(st.integers(-20, 15)))
        when = ts
        if adversarial and draw(st.integers(0, 5)) == 0:
            when = draw(st.sampled_from(FAR_TIMESTAMPS)) + draw(st.integers(-20, 20))
        matched: tuple[int, ...] = ()
        if kind == "sequence":
            picked = draw(st.sets(st.integers(0, len(steps) - 1), min_size=1))
            matched = tuple(sorted(picked))
        event_id = f"e{draw(st.integers(0, 40))}"
        group = draw(st.sampled_from(["a", "b"]))
        payload = f"p-{event_id}".encode()
        rule_count = count if kind == "threshold" else 1
        rule_steps = steps if kind == "sequence" else ()
        alert = f"alert-{len(ops)}"
        distinct = draw(st.sampled_from(["u1", "u2", "u3"])) if distinct_rule and kind == "threshold" else None
        ops.append(
            WindowOp(
                kind, group, kind, event_id, when, payload, window, suppress, alert, rule_count, rule_steps, matched,
                distinct, not unordered,
            )
        )  # fmt: skip
    cuts = sorted(draw(st.sets(st.integers(1, len(ops)), max_size=6)) | {len(ops)})
    batches = [ops[start:end] for start, end in zip([0, *cuts], cuts, strict=False) if end > start]
    for _ in range(draw(st.integers(0, 3))):
        source = draw(st.integers(0, len(batches) - 1))
        again = batches[source][draw(st.integers(0, len(batches[source]) - 1)) :]
        at = draw(st.integers(source + 1, len(batches)))
        if at < len(batches) and draw(st.booleans()):
            again = again + batches.pop(at)
        batches.insert(at, again)
    return batches
