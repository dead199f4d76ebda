"""The synthetic event factory: reproducible, valid events, scenario shapes, and every default rule
triggered by the scenario written for it (and by nothing benign)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise

import orjson
import pytest

from auditflow.backends.state.memory import MemoryWindowState
from auditflow.model.event import Event
from auditflow.model.timeutil import to_millis
from auditflow.rules.engine import Detector
from auditflow.rules.loader import load_rules
from auditflow.services.generator import BENIGN_LABEL, EventFactory
from auditflow.services.scenarios import (
    DESTRUCTIVE_SUDO,
    PRIVILEGED_GROUPS,
    SCENARIOS,
    SENSITIVE_PATHS,
)

NOW = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)

# Which default rules each scenario is written to trigger.
EXPECTED_RULES = {
    "brute_force": {"failed-login-burst"},
    "login_after_failures": {"failed-login-burst", "login-after-failure-burst"},
    "sensitive_file_edit": {"sensitive-file-modified"},
    "destructive_sudo": {"dangerous-sudo-command"},
    "privileged_account_created": {"privileged-account-created"},
    "privileged_group_added": {"privileged-group-member-added"},
    "service_stopped": {"service-stopped-unexpectedly"},
}
MATCH_RULES = {
    "sensitive-file-modified",
    "dangerous-sudo-command",
    "privileged-account-created",
    "privileged-group-member-added",
    "service-stopped-unexpectedly",
}


def factory(seed: int = 7, attack_share: float = 0.05) -> EventFactory:
    return EventFactory(seed, attack_share, clock=lambda: NOW)


def test_the_same_seed_gives_the_same_stream() -> None:
    first = [event.model_dump_json() for event in factory(seed=3).next_batch(500)]
    second = [event.model_dump_json() for event in factory(seed=3).next_batch(500)]
    other = [event.model_dump_json() for event in factory(seed=4).next_batch(500)]
    assert first == second
    assert first != other


def test_every_event_validates_and_serialises_with_a_single_z() -> None:
    for event in factory(attack_share=0.5).next_batch(2000):
        data = orjson.loads(event.model_dump_json())
        assert Event.model_validate(data) == event
        assert data["timestamp"].endswith("Z")
        assert "+00:00" not in data["timestamp"]


def test_batches_are_exact_and_mix_in_roughly_the_attack_share() -> None:
    source = factory(attack_share=0.1)
    by_scenario: Counter[str] = Counter()
    for size in (1, 7, 1000, 9000):
        batch = source.generate(size)
        assert len(batch.events) == size
        assert sum(batch.by_scenario.values()) == size
        by_scenario.update(batch.by_scenario)
    attacks = sum(n for label, n in by_scenario.items() if label != BENIGN_LABEL)
    assert 0.07 < attacks / by_scenario.total() < 0.13
    assert set(by_scenario) == {BENIGN_LABEL, *SCENARIOS}


def test_attack_share_zero_and_one() -> None:
    assert set(factory(attack_share=0).generate(3000).by_scenario) == {BENIGN_LABEL}
    assert BENIGN_LABEL not in factory(attack_share=1).generate(500).by_scenario
    with pytest.raises(ValueError, match="attack_share"):
        EventFactory(1, 1.5)


def test_benign_activity_covers_the_prototype_event_types() -> None:
    types = Counter(event.event_type for event in factory(attack_share=0).next_batch(3000))
    expected = {"user_login", "user_logout", "file_modified", "sudo_command", "user_created"}
    expected |= {"service_state_change", "process_started", "network_connection"}
    assert expected <= set(types)
    assert types.most_common(1)[0][1] < 0.3 * types.total()


@pytest.mark.parametrize("seed", range(20))
def test_scenarios_are_ordered_and_end_now(seed: int) -> None:
    source = factory(seed)
    for name in SCENARIOS:
        events = source.scenario(name)
        stamps = [to_millis(event.timestamp) for event in events]
        assert stamps == sorted(set(stamps)), name  # strictly increasing, even at millisecond precision
        assert events[-1].timestamp == NOW
        assert stamps[-1] - stamps[0] < 45_000


@pytest.mark.parametrize("seed", range(20))
def test_login_scenario_shapes(seed: int) -> None:
    source = factory(seed)
    burst = source.scenario("brute_force")
    assert 5 <= len(burst) <= 10
    assert {(e.event_type, e.action_result, e.user_id, e.server_hostname) for e in burst} == {
        ("user_login", "FAILURE", burst[0].user_id, burst[0].server_hostname)
    }
    assert to_millis(burst[-1].timestamp) - to_millis(burst[0].timestamp) < 5000

    chain = source.scenario("login_after_failures")
    *failures, success = chain
    assert len(failures) >= 3
    assert {e.action_result for e in failures} == {"FAILURE"}
    assert success.action_result == "SUCCESS"
    assert {(e.user_id, e.server_hostname) for e in chain} == {(success.user_id, success.server_hostname)}
    assert all(100 <= to_millis(b.timestamp) - to_millis(a.timestamp) <= 1000 for a, b in pairwise(chain))


@pytest.mark.parametrize("seed", range(20))
def test_privilege_and_service_scenario_shapes(seed: int) -> None:
    source = factory(seed)
    assert source.scenario("sensitive_file_edit")[-1].details["resource"] in SENSITIVE_PATHS
    assert source.scenario("destructive_sudo")[-1].details["command"] in DESTRUCTIVE_SUDO
    created = source.scenario("privileged_account_created")[0]
    assert created.event_type == "user_created"
    assert created.details["groups"] in PRIVILEGED_GROUPS
    stopped = source.scenario("service_stopped")[-1]
    assert (stopped.details["state"], stopped.details["expected"]) == ("stopped", False)


default_rules = cache(lambda: load_rules(None))


async def detect(events: list[Event]) -> set[str]:
    rules = default_rules()
    async with MemoryWindowState() as state:
        alerts = await Detector(state, lambda: rules).process(events)
    return {alert.rule_id for alert in alerts}


async def test_every_default_rule_has_a_scenario() -> None:
    rule_ids = {rule.id for rule in default_rules().enabled}
    assert set().union(*EXPECTED_RULES.values()) == rule_ids


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_scenario_triggers_its_default_rules(name: str) -> None:
    # Many seeds so that every command, path and group variant of the scenario is exercised.
    for seed in range(40):
        fired = await detect(factory(seed).scenario(name))
        assert fired == EXPECTED_RULES[name], (seed, [e.model_dump(mode="json") for e in factory(seed).scenario(name)])


async def test_benign_activity_triggers_no_single_event_rule() -> None:
    # Threshold and sequence rules are left out: with every event at the same instant, chance
    # coincidences of benign typos are expected there.
    fired = await detect(factory(attack_share=0).next_batch(20_000))
    assert not fired & MATCH_RULES
