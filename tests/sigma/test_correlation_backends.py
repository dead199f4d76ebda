"""Every Sigma correlation type AuditFlow converts, run end to end through the detector on each
window-state backend: matching and non-matching event streams, and two analysis workers sharing
the state, each handling part of a group's events at the same time, opening exactly one alert."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from auditflow.backends.state import WindowState
from auditflow.model import Event
from auditflow.model.alert import Alert
from auditflow.rules import Detector
from tests.sigma.helpers import BASE, correlation, create_binding, fire, import_texts, read_secret, ruleset

USER = "details.kubernetes.audit.user.username"


@dataclass(frozen=True)
class Case:
    body: str
    quiet: tuple[Event, ...]  # of other users: no alert
    firing: tuple[Event, ...]  # of alice, in time order: one alert, opened by the last
    occurrences: int  # of the alert the firing events open


CASES = {
    "event_count": Case(
        "  type: event_count\n  rules: [secret_read]\n  group-by: [user.username]\n  timespan: 5m\n"
        "  condition: {gte: 3}\n",
        # bob's reads are too far apart, carol's events are of another rule.
        (read_secret(0, "bob"), read_secret(10, "bob"), read_secret(400, "bob"), create_binding(5, "carol"),
         create_binding(6, "carol"), create_binding(7, "carol")),
        (read_secret(100), read_secret(200), read_secret(390)),
        3,
    ),
    "value_count": Case(
        "  type: value_count\n  rules: [secret_read]\n  group-by: [user.username]\n  timespan: 10m\n"
        "  condition: {gte: 3, field: objectRef.name}\n",
        # bob reads one secret again and again; carol's third name comes too late.
        (*(read_secret(i, "bob", name="db") for i in range(5)), read_secret(0, "carol", name="a"),
         read_secret(10, "carol", name="b"), read_secret(700, "carol", name="c")),
        (read_secret(0, name="db"), read_secret(10, name="db"), read_secret(20, name="api"),
         read_secret(30, name="tls")),
        3,
    ),
    "temporal": Case(
        "  type: temporal\n  rules: [secret_read, binding_created]\n  group-by: [user.username]\n  timespan: 10m\n",
        # bob's two events are too far apart, carol reads twice, dave and erin do one each.
        (create_binding(0, "bob"), read_secret(601, "bob"), read_secret(0, "carol"), read_secret(1, "carol", name="x"),
         create_binding(3, "dave"), read_secret(4, "erin")),
        (create_binding(40), read_secret(50)),  # the reverse of the rules' order
        2,
    ),
    "temporal_ordered": Case(
        "  type: temporal_ordered\n  rules: [binding_created, secret_read]\n  group-by: [user.username]\n"
        "  timespan: 10m\n",
        # bob reads before he creates the binding; carol's read comes too late.
        (read_secret(0, "bob"), create_binding(5, "bob"), create_binding(0, "carol"), read_secret(601, "carol")),
        (create_binding(0), read_secret(30)),
        2,
    ),
}  # fmt: skip


def convert(tmp_path: Path, kind: str) -> dict[str, Any]:
    report = import_texts(tmp_path, BASE, correlation(CASES[kind].body))
    [rule] = [r.rule for r in report.rules if r.title.startswith("Correlation")]
    return rule


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_each_correlation_fires_on_its_stream_only(tmp_path: Path, any_state: WindowState, kind: str) -> None:
    case, rule = CASES[kind], convert(tmp_path, kind)
    assert await fire(any_state, rule, case.quiet) == []
    assert await fire(any_state, rule, case.firing[:-1]) == []
    [alert] = await fire(any_state, rule, case.firing[-1:])
    assert alert.group == {USER: "alice"}
    assert alert.occurrences == case.occurrences
    assert set(alert.event_ids) <= {event.event_id for event in case.firing}
    assert alert.rule_id == rule["id"]


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_two_workers_sharing_the_state_open_one_alert(
    tmp_path: Path, worker_states: list[WindowState], kind: str
) -> None:
    case, rule = CASES[kind], convert(tmp_path, kind)
    workers = [Detector(state, lambda: ruleset(rule)) for state in worker_states]
    # Both workers keep the rule's suppression, as deployed; alice does once more what completed
    # it, so that a repeat can race with the alert that opens.
    again = case.firing[-1].model_copy(update={"event_id": uuid4()})
    first, *rest = case.firing
    # The group's first event is analysed first (as an ordered sequence needs), then everything
    # else, alice's events and the others', split between the workers, which run at once.
    alerts = await workers[0].process([first])
    shares: list[list[Event]] = [[], []]
    for i, event in enumerate([*rest, again, *case.quiet]):
        shares[i % 2].append(event)

    async def worker(index: int, events: Sequence[Event]) -> list[Alert]:
        found: list[Alert] = []
        for event in events:
            found += await workers[index].process([event])
            await asyncio.sleep(0)  # let the other worker interleave
        return found

    for part in await asyncio.gather(worker(0, shares[0]), worker(1, shares[1])):
        alerts += part
    assert {alert.group[USER] for alert in alerts} == {"alice"}
    assert len({alert.alert_id for alert in alerts}) == 1  # opened once, then repeated
    assert max(alert.occurrences for alert in alerts) >= case.occurrences
