"""The detector end to end over the in-memory window state: windows, groups, suppression, sequences."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from auditflow.backends.state import Hit, WindowOp, WindowState, create_state
from auditflow.backends.state.base import derived_alert_id
from auditflow.backends.state.redis import RedisWindowState
from auditflow.model import Event
from auditflow.model.alert import MAX_ALERT_EVENT_IDS, MAX_SAMPLE_EVENTS
from auditflow.model.timeutil import to_millis
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.syslog import SyslogParser
from auditflow.rules import Detector, Rule, RuleSet
from auditflow.rules.engine import _epoch_ms, _event_id, _payload, _sent_payload
from auditflow.rules.loader import load_rules
from tests.conftest import REDIS_URL, require_server

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_rule = TypeAdapter[Rule](Rule)

BURST: dict[str, Any] = {
    "id": "failed-login-burst",
    "name": "Failed login burst",
    "description": "{occurrences} failures for {user_id} on {server_hostname}",
    "kind": "threshold",
    "severity": "ERROR",
    "where": {"event_type": "user_login", "action_result": "FAILURE"},
    "count": 3,
    "window": "60s",
    "group_by": ["user_id", "server_hostname"],
    "suppress_for": "5m",
}
SEQUENCE: dict[str, Any] = {
    "id": "login-after-burst",
    "name": "Login after failures",
    "kind": "sequence",
    "severity": "CRITICAL",
    "steps": [
        {"where": {"event_type": "user_login", "action_result": "FAILURE"}, "count": 3},
        {"where": {"event_type": "user_login", "action_result": "SUCCESS"}},
    ],
    "window": "5m",
    "group_by": ["user_id", "server_hostname"],
    "suppress_for": "15m",
}
SHADOW: dict[str, Any] = {
    "id": "shadow",
    "name": "Shadow touched",
    "description": "{details.resource} changed by {user_id}{details.nothing}",
    "kind": "match",
    "severity": "CRITICAL",
    "tags": ["files"],
    "where": {"event_type": "file_modified", "details.resource": "/etc/shadow"},
}


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    return RuleSet.build([_rule.validate_python(rule) for rule in rules], version="test", source="test")


def login(result: str, seconds: float, user: str = "alice", host: str = "web-1") -> Event:
    return Event(
        event_type="user_login",
        action_result=result,
        user_id=user,
        server_hostname=host,
        timestamp=T0 + timedelta(seconds=seconds),
    )


@pytest.fixture
async def state() -> AsyncIterator[WindowState]:
    async with create_state("memory://") as window_state:
        yield window_state


async def test_five_failures_in_a_second_across_batches_make_exactly_one_alert(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(BURST))
    events = [login("FAILURE", i * 0.2) for i in range(5)]
    results = [await detector.process(batch) for batch in (events[:2], events[2:4], events[4:])]
    assert [len(r) for r in results] == [0, 1, 1]
    first, second = results[1][0], results[2][0]
    assert first.alert_id == second.alert_id
    assert first.occurrences == 4  # three opened it, the fourth joined in the same batch
    assert second.occurrences == 5
    alert = first
    assert alert.group == {"user_id": "alice", "server_hostname": "web-1"}
    assert (alert.user_id, alert.server_hostname) == ("alice", "web-1")
    assert alert.description == "4 failures for alice on web-1"
    assert alert.first_seen == events[0].timestamp
    assert alert.last_seen == events[3].timestamp
    assert alert.event_ids == [e.event_id for e in events[:4]]
    assert alert.sample_events == events[:4]  # two of them parsed back from the state's payloads
    assert (alert.rule_kind, alert.severity, alert.rule_name) == ("threshold", "ERROR", "Failed login burst")


async def test_the_sliding_window_includes_its_left_edge(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(BURST))
    assert await detector.process([login("FAILURE", 0), login("FAILURE", 30), login("FAILURE", 60.001)]) == []
    alerts = await detector.process([login("FAILURE", 90)])  # 30, 60.001, 90 lie within 60 s
    assert len(alerts) == 1
    assert alerts[0].first_seen == T0 + timedelta(seconds=30)

    other = Detector(state, lambda: ruleset(BURST))
    edge = [login("FAILURE", s, user="bob") for s in (0, 30, 60)]  # exactly 60 s apart: inside
    assert len(await other.process(edge)) == 1


async def test_groups_are_isolated(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(BURST))
    batch = [
        login("FAILURE", s, user=user, host=host)
        for s in (0, 1)
        for user, host in (("alice", "web-1"), ("bob", "web-1"), ("alice", "web-2"))
    ]
    assert await detector.process(batch) == []
    alerts = await detector.process([login("FAILURE", 2, user="alice", host="web-2")])
    assert [(a.user_id, a.server_hostname, a.occurrences) for a in alerts] == [("alice", "web-2", 3)]


async def test_suppression_folds_repeats_then_expires(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(BURST))
    [opened] = await detector.process([login("FAILURE", s) for s in (0, 1, 2)])
    [repeat] = await detector.process([login("FAILURE", 40)])
    assert repeat.alert_id == opened.alert_id
    assert repeat.occurrences == 4
    assert repeat.first_seen == opened.first_seen
    later = [login("FAILURE", 400 + s) for s in (0, 1, 2)]  # > 5 min after the last hit
    [fresh] = await detector.process(later)
    assert fresh.alert_id != opened.alert_id
    assert fresh.occurrences == 3


async def test_suppress_for_zero_opens_an_alert_per_hit(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(SHADOW | {"suppress_for": 0}))
    touch = [
        Event(event_type="file_modified", details={"resource": "/etc/shadow"}, timestamp=T0 + timedelta(seconds=i))
        for i in range(3)
    ]
    alerts = await detector.process(touch)
    assert len({alert.alert_id for alert in alerts}) == 3


async def test_match_rule_alert_fields_come_from_the_event(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(SHADOW))
    shadow = Event(
        event_type="file_modified", user_id="mallory", server_hostname="db-1", details={"resource": "/etc/shadow"}
    )
    notes = Event(event_type="file_modified", user_id="mallory", details={"resource": "/tmp/notes.txt"})
    [alert] = await detector.process([shadow, notes])
    assert (alert.user_id, alert.server_hostname, alert.group) == ("mallory", "db-1", {})
    assert alert.description == "/etc/shadow changed by mallory"
    assert alert.tags == ["files"]
    assert alert.event_ids == [shadow.event_id]
    assert await detector.process([notes]) == []


async def test_a_redelivered_batch_names_the_same_alerts_again_unchanged(state: WindowState) -> None:
    """As when a replica dies between applying a batch and publishing its alerts: the redelivered
    batch yields the same alerts (to publish, or to upsert once more), and no new occurrence."""
    detector = Detector(state, lambda: ruleset(BURST, SHADOW, SEQUENCE))
    batch = [login("FAILURE", s) for s in (0, 1, 2, 2.5)] + [login("SUCCESS", 3)]
    batch.append(Event(event_type="file_modified", details={"resource": "/etc/shadow"}, timestamp=T0))
    first = await detector.process(batch)
    again = await detector.process(batch)
    assert [(a.rule_id, a.occurrences) for a in first] == [
        ("failed-login-burst", 4),
        ("login-after-burst", 4),
        ("shadow", 1),
    ]
    assert again == first  # ids, counts, text and evidence: a replay is a repeat, not a new alert
    [repeat] = await detector.process([login("FAILURE", 4)])
    assert (repeat.alert_id, repeat.occurrences) == (first[0].alert_id, 5)


async def test_hits_of_one_alert_in_a_batch_coalesce_with_capped_evidence(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(SHADOW))
    touches = [
        Event(event_type="file_modified", details={"resource": "/etc/shadow"}, timestamp=T0 + timedelta(seconds=i))
        for i in range(150)
    ]
    [alert] = await detector.process(touches)
    assert alert.occurrences == 150
    assert alert.event_ids == [e.event_id for e in touches[:MAX_ALERT_EVENT_IDS]]
    assert len(alert.sample_events) == MAX_SAMPLE_EVENTS
    assert (alert.first_seen, alert.last_seen) == (touches[0].timestamp, touches[-1].timestamp)


async def test_sequence_fires_only_in_order(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(SEQUENCE))
    out_of_order = [login("SUCCESS", 0, user="bob"), *(login("FAILURE", s, user="bob") for s in (1, 2, 3))]
    assert await detector.process(out_of_order) == []
    too_few = [login("FAILURE", s, user="carol") for s in (0, 1)] + [login("SUCCESS", 2, user="carol")]
    assert await detector.process(too_few) == []
    in_order = [login("FAILURE", s) for s in (0, 1, 2)] + [login("SUCCESS", 3)]
    [alert] = await detector.process(in_order)
    assert alert.rule_kind == "sequence"
    assert alert.occurrences == 4
    assert alert.event_ids == [e.event_id for e in in_order]
    too_late = [login("FAILURE", s, user="dave") for s in (0, 1, 2)] + [login("SUCCESS", 400, user="dave")]
    assert await detector.process(too_late) == []


async def test_rules_are_read_per_batch_and_disabled_rules_are_skipped(state: WindowState) -> None:
    current = {"rules": ruleset(SHADOW | {"enabled": False})}
    detector = Detector(state, lambda: current["rules"])
    touch = Event(event_type="file_modified", details={"resource": "/etc/shadow"})
    assert await detector.process([touch]) == []
    current["rules"] = ruleset(SHADOW)
    assert len(await detector.process([Event(event_type="file_modified", details={"resource": "/etc/shadow"})])) == 1


async def test_unpinned_rules_see_every_event_type(state: WindowState) -> None:
    root = {"id": "root", "name": "Root", "kind": "match", "severity": "INFO", "where": {"user_id": "root"}}
    detector = Detector(state, lambda: ruleset(root, SHADOW))
    alerts = await detector.process([Event(event_type="anything", user_id="root")])
    assert [a.rule_id for a in alerts] == ["root"]


# --- properties ---------------------------------------------------------------------------------

GROUPS: list[tuple[str | None, str | None]] = [("alice", "web-1"), ("alice", "web-2"), ("bob", "web-1")]


def expected_new_alerts(times_by_group: dict[int, list[int]], count: int, window: int, suppress: int) -> Counter[int]:
    """A direct model of threshold + suppression for events arriving in time order."""
    opened: Counter[int] = Counter()
    for group, times in times_by_group.items():
        last_hit: int | None = None
        for i, ts in enumerate(times):
            if sum(1 for t in times[: i + 1] if t >= ts - window) < count:
                continue
            if last_hit is None or ts - last_hit >= suppress:
                opened[group] += 1
            last_hit = ts
    return opened


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(GROUPS) - 1), st.integers(0, 45_000)), max_size=40),
    st.integers(1, 15),
)
def test_alerts_open_exactly_for_groups_with_three_failures_in_a_minute(
    steps: list[tuple[int, int]], batch_size: int
) -> None:
    events: list[Event] = []
    times: dict[int, list[int]] = {}
    now = 0
    for group, gap in steps:
        now += gap
        user, host = GROUPS[group]
        events.append(login("FAILURE", now / 1000, user=str(user), host=str(host)))
        times.setdefault(group, []).append(now)

    async def run() -> Counter[int]:
        # Each alert that opens gets an id of its own (derived from its opening event) and every
        # repeat names it again, so the alerts opened per group are its distinct ids.
        ids: dict[int, set[UUID]] = {}
        async with create_state("memory://") as window_state:
            detector = Detector(window_state, lambda: ruleset(BURST))
            for start in range(0, len(events), batch_size):
                for alert in await detector.process(events[start : start + batch_size]):
                    group = (alert.user_id, alert.server_hostname)
                    ids.setdefault(GROUPS.index(group), set()).add(alert.alert_id)
        return Counter({group: len(opened) for group, opened in ids.items()})

    assert asyncio.run(run()) == expected_new_alerts(times, count=3, window=60_000, suppress=300_000)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["FAILURE", "SUCCESS"]), max_size=12), st.integers(1, 6))
def test_sequence_fires_once_iff_a_success_follows_three_failures(results: list[str], batch_size: int) -> None:
    events = [login(result, i) for i, result in enumerate(results)]

    async def run() -> int:
        async with create_state("memory://") as window_state:
            detector = Detector(window_state, lambda: ruleset(SEQUENCE))
            ids: set[UUID] = set()
            for start in range(0, len(events), batch_size):
                ids.update(alert.alert_id for alert in await detector.process(events[start : start + batch_size]))
            return len(ids)

    fires = any(r == "SUCCESS" and results[:i].count("FAILURE") >= 3 for i, r in enumerate(results))
    assert asyncio.run(run()) == int(fires)


async def test_alert_ids_are_derived_from_what_opened_the_alert() -> None:
    """Reprocessing the same batch against fresh state (a crash before the ack) names the same alert."""
    from auditflow.backends.state import create_state
    from auditflow.model import Event
    from auditflow.rules import Detector, load_rules

    ruleset = load_rules(None)
    events = [Event(event_type="file_modified", server_hostname="h", details={"resource": "/etc/shadow"})]
    first = await Detector(create_state("memory://"), lambda: ruleset).process(events)
    again = await Detector(create_state("memory://"), lambda: ruleset).process(events)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    other = [Event(event_type="file_modified", server_hostname="h", details={"resource": "/etc/shadow"})]
    different = await Detector(create_state("memory://"), lambda: ruleset).process(other)
    assert different[0].alert_id != first[0].alert_id


ENUMERATION: dict[str, Any] = {
    "id": "invalid-user-enumeration",
    "name": "Invalid user enumeration",
    "description": "{occurrences} unknown users from {details.source.ip}: {distinct_values}",
    "kind": "threshold",
    "severity": "WARNING",
    "where": {"event_type": "ssh_invalid_user"},
    "count": 3,
    "distinct": "user_id",
    "window": "10m",
    "group_by": ["details.source.ip"],
}


def invalid_user(user: str | None, seconds: float, ip: str = "203.0.113.9") -> Event:
    """What the sshd parser makes of `Invalid user USER from IP port P`."""
    return Event(
        event_type="ssh_invalid_user",
        action_result="FAILURE",
        user_id=user,
        server_hostname="bastion",
        timestamp=T0 + timedelta(seconds=seconds),
        details={"source": {"ip": ip, "port": 50_022}, "ssh": {"invalid_user": True}},
    )


async def test_a_distinct_count_threshold_counts_values_not_events(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(ENUMERATION))
    # The same two names again and again, and events without a user: never three distinct names.
    repeats = [invalid_user(name, i) for i, name in enumerate(["admin", "oracle"] * 5)] + [invalid_user(None, 11)]
    assert await detector.process(repeats) == []
    # Another source address has its own window.
    assert await detector.process([invalid_user("test", 12, ip="198.51.100.1")]) == []
    alerts = await detector.process([invalid_user("test", 13)])
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.occurrences == 3
    assert alert.description == "3 unknown users from 203.0.113.9: admin, oracle, test"
    # Its evidence is the first event of each name.
    assert alert.event_ids == [repeats[0].event_id, repeats[1].event_id, alerts[0].sample_events[2].event_id]
    assert alert.first_seen == T0
    assert alert.last_seen == T0 + timedelta(seconds=13)


async def test_a_distinct_count_threshold_slides_over_ten_minutes(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(ENUMERATION))
    spread = [invalid_user(name, minutes * 60) for name, minutes in [("a", 0), ("b", 6), ("c", 12), ("d", 18)]]
    assert await detector.process(spread) == []  # never three names within ten minutes
    assert len(await detector.process([invalid_user("e", 19 * 60)])) == 1  # c, d and e


async def test_failures_and_the_success_in_one_second_complete_the_sequence(state: WindowState) -> None:
    # Syslog time has one-second resolution: sshd's failures and the accepted login share it.
    detector = Detector(state, lambda: ruleset(SEQUENCE))
    same_second = [login("FAILURE", 5), login("FAILURE", 5), login("FAILURE", 5), login("SUCCESS", 5)]
    alerts = await detector.process(same_second)
    assert [(a.rule_id, a.occurrences, a.event_ids) for a in alerts] == [
        ("login-after-burst", 4, [e.event_id for e in same_second])
    ]
    # Across batches too; but a success that came before the failures does not follow them.
    other = [login("SUCCESS", 5, user="bob")] + [login("FAILURE", 5, user="bob") for _ in range(3)]
    assert await detector.process(other[:2]) == []
    assert await detector.process(other[2:]) == []
    assert len(await detector.process([login("SUCCESS", 5, user="bob")])) == 1


async def test_a_login_failure_dated_far_in_the_future_blinds_nothing(state: WindowState) -> None:
    detector = Detector(state, lambda: ruleset(BURST))
    future = Event(
        event_type="user_login",
        action_result="FAILURE",
        user_id="alice",
        server_hostname="web-1",
        timestamp=datetime(9999, 1, 1, tzinfo=UTC),
    )
    assert await detector.process([future]) == []
    alerts = await detector.process([login("FAILURE", s) for s in range(12)])
    assert len(alerts) == 1
    assert alerts[0].occurrences == 12  # opened by the third with three, then nine repeats
    assert future.event_id not in alerts[0].event_ids


async def test_sshd_lines_of_one_second_raise_login_after_failure_burst(state: WindowState) -> None:
    # The log-sources case end to end: real sshd lines through the parser and the default rules.
    lines = [
        "Mar  1 12:00:05 web-1 sshd[4711]: Failed password for alice from 203.0.113.9 port 50022 ssh2",
        "Mar  1 12:00:05 web-1 sshd[4711]: Failed password for alice from 203.0.113.9 port 50022 ssh2",
        "Mar  1 12:00:05 web-1 sshd[4711]: Failed password for alice from 203.0.113.9 port 50022 ssh2",
        "Mar  1 12:00:05 web-1 sshd[4711]: Accepted password for alice from 203.0.113.9 port 50022 ssh2",
    ]
    parser = SyslogParser(SourceContext(year=2026))
    events: list[Event] = []
    for offset, line in enumerate(lines):
        parsed = parser.feed(line, key=f"auth.log:{offset}")
        assert not isinstance(parsed, Unparsed), parsed
        events += parsed
    assert len({event.timestamp for event in events}) == 1
    detector = Detector(state, lambda: load_rules(None))
    alerts = {alert.rule_id: alert for alert in await detector.process(events)}
    assert alerts["login-after-failure-burst"].event_ids == [event.event_id for event in events]


# --- sequence steps with a group_by of their own ---------------------------------------------------

NEW_ACCOUNT_SUDO: dict[str, Any] = {
    "id": "new-account-then-sudo",
    "name": "New account used sudo",
    "description": "{user_id}, created on {server_hostname}, ran `{details.command}` with sudo",
    "kind": "sequence",
    "severity": "CRITICAL",
    "steps": [
        # The creation names the account in details; the sudo event in user_id (the rule's group_by).
        {"where": {"event_type": "user_created"}, "group_by": ["server_hostname", "details.new_user"]},
        {"where": {"event_type": "sudo_command"}},
    ],
    "window": "15m",
    "group_by": ["server_hostname", "user_id"],
}


def created(new_user: str, seconds: float, host: str = "web-1", by: str = "root") -> Event:
    return Event(
        event_type="user_created",
        user_id=by,
        server_hostname=host,
        timestamp=T0 + timedelta(seconds=seconds),
        details={"new_user": new_user, "groups": []},
    )


def sudo(user: str, seconds: float, host: str = "web-1", command: str = "/bin/bash") -> Event:
    return Event(
        event_type="sudo_command",
        user_id=user,
        server_hostname=host,
        timestamp=T0 + timedelta(seconds=seconds),
        details={"command": command},
    )


class CountingState(WindowState):
    """A window state that counts its `apply` calls."""

    def __init__(self, inner: WindowState) -> None:
        super().__init__(inner.url)
        self.inner, self.calls = inner, 0

    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        self.calls += 1
        return await self.inner.apply(ops)

    async def ping(self) -> None:
        await self.inner.ping()

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=["memory", "redis"])
async def any_state(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[WindowState]:
    """The in-memory state and the Redis one, which must detect alike."""
    if request.param == "memory":
        async with create_state("memory://") as memory:
            yield memory
        return
    require_server("redis")
    async with RedisWindowState(REDIS_URL, key_prefix=f"{unique_name}:") as shared:
        yield shared
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{unique_name}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_steps_join_on_fields_of_their_own(any_state: WindowState) -> None:
    detector = Detector(any_state, lambda: ruleset(NEW_ACCOUNT_SUDO))
    eve, bob = created("eve", 0), created("bob", 0, host="web-2")
    # Neither the creator's sudo, nor the new name's sudo on another host, nor another account's.
    others = [sudo("root", 1), sudo("eve", 2, host="web-2"), sudo("carol", 3)]
    assert await detector.process([eve, bob, *others]) == []
    late = sudo("bob", 15 * 60 + 1, host="web-2")  # one second too late
    assert await detector.process([late]) == []
    used = sudo("eve", 14 * 60, command="/usr/bin/cat /etc/shadow")
    [alert] = await detector.process([used])
    assert alert.group == {"server_hostname": "web-1", "user_id": "eve"}
    assert (alert.user_id, alert.server_hostname) == ("eve", "web-1")
    assert alert.description == "eve, created on web-1, ran `/usr/bin/cat /etc/shadow` with sudo"
    assert alert.event_ids == [eve.event_id, used.event_id]
    assert (alert.occurrences, alert.first_seen, alert.last_seen) == (2, eve.timestamp, used.timestamp)
    assert alert.sample_events == [eve, used]  # the creation parsed back from the state's payload


async def test_an_event_matching_steps_with_different_keys_joins_each(any_state: WindowState) -> None:
    # Something passed on: a share to an account, then a share from it. A share b -> c completes
    # the chain of b (it received from a) and starts the chain of c, in one state call.
    relay = {
        "id": "relayed-share",
        "name": "Relayed share",
        "description": "{details.account} passed on a share",
        "kind": "sequence",
        "severity": "WARNING",
        "steps": [
            {"where": {"event_type": "share"}, "group_by": ["details.to"]},
            {"where": {"event_type": "share"}, "group_by": ["details.from"]},
        ],
        "window": "1h",
        "group_by": ["details.account"],
    }
    shares = [
        Event(event_type="share", timestamp=T0 + timedelta(seconds=i), details={"from": src, "to": dst})
        for i, (src, dst) in enumerate([("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")])
    ]
    counting = CountingState(any_state)
    alerts = await Detector(counting, lambda: ruleset(relay)).process(shares)
    assert counting.calls == 1
    assert [(a.group, a.description, a.event_ids) for a in alerts] == [
        ({"details.account": "b"}, "b passed on a share", [shares[0].event_id, shares[1].event_id]),
        ({"details.account": "c"}, "c passed on a share", [shares[1].event_id, shares[2].event_id]),
    ]
    assert len({alert.alert_id for alert in alerts}) == 2


async def test_steps_with_the_rules_fields_spelled_out_behave_as_without(state: WindowState) -> None:
    spelled = SEQUENCE | {"steps": [step | {"group_by": SEQUENCE["group_by"]} for step in SEQUENCE["steps"]]}
    events = [login("FAILURE", s) for s in (0, 1, 2)] + [login("SUCCESS", 3)]
    [plain] = await Detector(state, lambda: ruleset(SEQUENCE)).process(events)
    async with create_state("memory://") as other:
        [explicit] = await Detector(other, lambda: ruleset(spelled)).process(events)
    assert explicit == plain


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 0, 500, tzinfo=UTC),
        datetime(2026, 1, 1, 2, 0, 0, 1_000, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, 0, 0, 0, 7_000),  # naive: UTC
        datetime(2026, 1, 15, 12, tzinfo=ZoneInfo("Europe/London")),  # offset zero in winter
        datetime(2026, 7, 15, 12, tzinfo=ZoneInfo("Europe/London")),  # and one hour in summer
        Event.model_validate_json('{"event_type": "x", "timestamp": "2026-05-01T10:00:00.001Z"}').timestamp,
        TypeAdapter(datetime).validate_python("2026-05-01T10:00:00.001-05:30"),
    ],
)
def test_event_times_in_milliseconds_are_to_millis(value: datetime) -> None:
    # In this order, a zero-offset zone is met first: what is known of it must not apply to others.
    for earlier in (datetime(2026, 1, 15, tzinfo=ZoneInfo("Europe/London")), value):
        assert _epoch_ms(earlier) == to_millis(earlier)
    assert _epoch_ms(value) == to_millis(value)


def test_event_ids_as_strings_are_the_uuid_strings() -> None:
    for _ in range(100):
        event = Event(event_type="x")
        assert _event_id(event) == str(event.event_id)


class RecordingState(CountingState):
    """A window state that keeps the ops it was given."""

    def __init__(self, inner: WindowState) -> None:
        super().__init__(inner)
        self.ops: list[WindowOp] = []

    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        self.ops.extend(ops)
        return await super().apply(ops)


async def test_backends_derive_the_alert_ids_and_match_ops_carry_no_payload(any_state: WindowState) -> None:
    recording = RecordingState(any_state)
    detector = Detector(recording, lambda: ruleset(BURST, SHADOW))
    failures = [login("FAILURE", s) for s in (0, 1, 2)]
    shadow = Event(event_type="file_modified", user_id="mallory", details={"resource": "/etc/shadow"}, timestamp=T0)
    burst, touched = await detector.process([*failures, shadow])
    # The ids are those of the rule, group and opening event, whichever backend derived them.
    assert burst.alert_id == UUID(
        derived_alert_id("failed-login-burst", '["alice","web-1"]', str(failures[2].event_id))
    )
    assert touched.alert_id == UUID(derived_alert_id("shadow", "[]", str(shadow.event_id)))
    assert all(op.new_alert_id == "" for op in recording.ops)
    # A match rule's window keeps no payload, so its ops send none; the alert has its event anyway.
    assert [op.payload == b"" for op in recording.ops] == [False, False, False, True]
    assert touched.sample_events == [shadow]
    assert burst.sample_events == failures


def test_a_state_that_sends_payloads_gets_them_uncopied_and_equal() -> None:
    event = Event(event_type="x", user_id="u", details={"a": [1, "b"]})
    assert _sent_payload(event) == _payload(event)
    assert Event.model_validate_json(_sent_payload(event)) == event
    memory, shared = create_state("memory://"), RedisWindowState(REDIS_URL, key_prefix="unused:")
    assert Detector(memory, lambda: ruleset())._payload is _payload  # held for the window: sized copies
    assert Detector(shared, lambda: ruleset())._payload is _sent_payload
