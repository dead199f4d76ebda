"""The synthetic event factory: reproducible, valid events, scenario shapes, and every default rule
triggered by the scenario written for it (and by nothing benign)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from auditflow.backends.state.memory import MemoryWindowState
from auditflow.errors import BackendUnavailable
from auditflow.model.event import Event
from auditflow.model.timeutil import to_millis
from auditflow.rules.engine import Detector
from auditflow.rules.loader import load_rules
from auditflow.services.generator import (
    BENIGN_LABEL,
    MAX_CATCH_UP_SECONDS,
    EventFactory,
    GeneratorService,
    GeneratorSettings,
)
from auditflow.services.scenarios import (
    BENIGN_GROUPS,
    DESTRUCTIVE_SUDO,
    NEW_ACCOUNT_SUDO,
    PRIVILEGED_GROUPS,
    SCENARIOS,
    SENSITIVE_PATHS,
)

METRIC = "auditflow_generator_events_total"
NOW = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)

# Which default rules each scenario is written to trigger.
EXPECTED_RULES = {
    "brute_force": {"failed-login-burst", "ssh-brute-force-source"},
    "login_after_failures": {"failed-login-burst", "login-after-failure-burst"},
    "sensitive_file_edit": {"sensitive-file-modified"},
    "destructive_sudo": {"dangerous-sudo-command"},
    "privileged_account_created": {"privileged-account-created"},
    "privileged_group_added": {"privileged-group-member-added"},
    "new_account_sudo": {"new-account-then-sudo"},
    "service_stopped": {"service-stopped-unexpectedly"},
    "password_spray_success": {"ssh-brute-force-source", "ssh-login-after-brute-force"},
    "user_enumeration": {"ssh-invalid-user-enumeration"},
    "sudo_password_failures": {"sudo-password-failures"},
    "sudo_not_in_sudoers": {"sudo-user-not-in-sudoers"},
    "kubernetes_takeover": {
        "k8s-anonymous-request-allowed",
        "k8s-secret-read-by-user",
        "k8s-cluster-admin-binding",
        "k8s-pod-exec",
    },
}
MATCH_RULES = {
    "sudo-password-failures",
    "sudo-user-not-in-sudoers",
    "k8s-anonymous-request-allowed",
    "k8s-secret-read-by-user",
    "k8s-cluster-admin-binding",
    "k8s-pod-exec",
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
    made, login, ran = source.scenario("new_account_sudo")
    assert (made.event_type, login.event_type, ran.event_type) == ("user_created", "user_login", "sudo_command")
    assert made.details["groups"] in BENIGN_GROUPS  # not the privileged-account rule's case
    assert made.details["new_user"] == login.user_id == ran.user_id != made.user_id
    assert made.server_hostname == login.server_hostname == ran.server_hostname
    assert ran.details["command"] in NEW_ACCOUNT_SUDO
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
    fired = await detect(factory(attack_share=0).next_batch(10_000))
    assert not fired & MATCH_RULES


# --- the service -------------------------------------------------------------------------------


class SteppingClock:
    """Monotonic time that advances a fixed step on every read: the service's notion of elapsed time
    is fully controlled, whatever the real scheduling."""

    def __init__(self, step: float) -> None:
        self.step, self.now = step, 1000.0
        self.reads: list[float] = []

    def __call__(self) -> float:
        self.now += self.step
        self.reads.append(self.now)
        return self.now


class Sink:
    """A publish callable that records batches and lets a test await a number of events."""

    def __init__(self, failures: int = 0, clock: SteppingClock | None = None) -> None:
        self.batches: list[int] = []
        self.failures = failures
        self.clock = clock
        self.target = 0
        self.reached = asyncio.Event()

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.failures:
            self.failures -= 1
            if self.clock is not None:
                self.clock.now += 100  # a long outage: the publish hangs, then fails
            raise BackendUnavailable("broker down")
        self.batches.append(len(events))
        if self.total >= self.target:
            self.reached.set()

    @property
    def total(self) -> int:
        return sum(self.batches)

    async def wait_for(self, count: int) -> None:
        self.target = count
        self.reached.clear()
        if self.total < count:
            async with asyncio.timeout(10):  # a hang guard, not a timing assertion
                await self.reached.wait()


def service(sink: Sink, clock: SteppingClock, rate: float, **kwargs: Any) -> GeneratorService:
    # Real waits are tiny; elapsed time comes from the clock alone.
    options: dict[str, Any] = {"tick_seconds": 0.001, "max_tick_seconds": 0.001, "backoff_initial": 0.001}
    return GeneratorService(sink, events_per_second=rate, seed=1, clock=clock, **(options | kwargs))


def elapsed(clock: SteppingClock) -> float:
    return clock.reads[-1] - clock.reads[0]


@pytest.mark.parametrize(("rate", "step", "target"), [(0.5, 0.2, 10), (5.0, 0.1, 20), (50_000.0, 0.1, 20_000)])
async def test_emits_rate_times_elapsed_in_one_batch_per_tick(rate: float, step: float, target: int) -> None:
    sink, clock = Sink(), SteppingClock(step)
    async with service(sink, clock, rate) as generator:
        await sink.wait_for(target)
    # Fractions are carried, so the total is within one event of rate x elapsed.
    assert abs(sink.total - rate * elapsed(clock)) < 1 + 1e-6
    assert len(sink.batches) <= len(clock.reads)
    assert generator.stats.published == sink.total
    assert generator.state == "stopped"


async def wait_for_state(generator: GeneratorService, state: str) -> None:
    for _ in range(1000):
        if generator.state == state:
            return
        await asyncio.sleep(0)
    pytest.fail(f"generator is {generator.state}, not {state}")


def scenario_counts() -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(METRIC, {"scenario": name}) or 0.0 for name in [BENIGN_LABEL, *SCENARIOS]}


async def test_counts_published_events_by_scenario() -> None:
    before, sink = scenario_counts(), Sink()
    async with service(sink, SteppingClock(0.1), 10_000):
        await sink.wait_for(5000)
    delta = {name: value - before[name] for name, value in scenario_counts().items()}
    assert sum(delta.values()) == sink.total
    assert 0.8 * sink.total < delta[BENIGN_LABEL] < sink.total


async def test_an_update_wakes_a_long_wait_at_once() -> None:
    sink = Sink()
    # At 0.0001 events/s the loop sleeps for its longest tick (an hour); only the wake-up can end it.
    async with service(sink, SteppingClock(0.1), 0.0001, max_tick_seconds=3600) as generator:
        await wait_for_state(generator, "running")
        await generator.update(events_per_second=1000)
        await sink.wait_for(100)


@pytest.mark.parametrize("pause", [{"events_per_second": 0}, {"enabled": False}])
async def test_pauses_without_busy_looping_and_resumes_on_update(pause: dict[str, Any]) -> None:
    sink, clock = Sink(), SteppingClock(0.1)
    async with service(sink, clock, 100) as generator:
        await sink.wait_for(10)
        await generator.update(**pause)
        await wait_for_state(generator, "paused")
        reads, total = len(clock.reads), sink.total
        for _ in range(50):
            await asyncio.sleep(0)
        assert (len(clock.reads), sink.total) == (reads, total)  # parked, not polling
        clock.now += 3600  # an hour of pause
        settings = await generator.update(events_per_second=200, enabled=True)
        assert settings == GeneratorSettings(events_per_second=200, enabled=True)
        assert generator.settings == settings
        await sink.wait_for(total + 50)
    # Only time spent running counts: nothing is owed for the pause.
    resumed = clock.reads[reads]
    assert abs(sink.total - total - 200 * (clock.reads[-1] - resumed)) < 1 + 1e-6


async def test_starts_paused_at_rate_zero() -> None:
    sink, clock = Sink(), SteppingClock(0.1)
    async with service(sink, clock, 0) as generator:
        await wait_for_state(generator, "paused")
        await generator.update(events_per_second=20)
        await sink.wait_for(10)


async def test_invalid_updates_are_refused_and_change_nothing() -> None:
    generator = service(Sink(), SteppingClock(0.1), 5)
    for bad in (-1.0, float("inf"), float("nan"), 2_000_000.0):
        with pytest.raises(ValidationError):
            await generator.update(events_per_second=bad)
    assert generator.settings == GeneratorSettings(events_per_second=5, enabled=True)
    with pytest.raises(ValidationError):
        GeneratorSettings.model_validate({"events_per_second": 1, "enabled": True, "burst": 3})


async def test_survives_publish_failures_by_dropping_and_backing_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = SteppingClock(0.1)
    sink = Sink(failures=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="auditflow.generator"):
        async with service(sink, clock, 1000) as generator:
            await sink.wait_for(500)
    assert generator.stats.failures == 3
    assert 297 <= generator.stats.dropped <= 300  # three ticks of 0.1 s at 1000 events/s
    # Neither the dropped ticks nor the outage are owed later: the first batch is one tick's worth.
    assert sink.batches[0] <= 1000 * 0.1 + 1
    assert sum(1 for r in caplog.records if "publish failed" in r.getMessage()) == 3


async def test_unexpected_publish_errors_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky(events: Sequence[Event]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a publisher")
        done.set()

    done = asyncio.Event()
    generator = GeneratorService(
        flaky, events_per_second=1000, clock=SteppingClock(0.1), tick_seconds=0.001, backoff_initial=0.001
    )
    with caplog.at_level(logging.ERROR, logger="auditflow.generator"):
        async with generator:
            await done.wait()
    assert generator.stats.failures == 1
    assert "bug in a publisher" in caplog.text


async def test_aclose_waits_for_the_publish_in_flight() -> None:
    release, entered, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(events: Sequence[Event]) -> None:
        entered.set()
        await release.wait()
        finished.set()

    generator = GeneratorService(slow, events_per_second=100, clock=SteppingClock(0.1), tick_seconds=0.001)
    await generator.start()
    await generator.start()  # idempotent
    await entered.wait()
    closing = asyncio.create_task(generator.aclose())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    await closing
    assert finished.is_set()
    assert generator.stats.published > 0
    await generator.aclose()  # idempotent


async def test_caps_one_tick_when_far_behind() -> None:
    sink = Sink()
    # 1 M events/s and 0.5 s per tick would be 500,000 events; the batch is capped instead.
    async with service(sink, SteppingClock(0.5), 1_000_000, max_batch=2000, chunk_size=500):
        await sink.wait_for(4000)
    assert max(sink.batches) == 2000


async def test_a_stall_is_not_made_up_beyond_a_bound() -> None:
    sink = Sink()
    # Ten seconds between ticks (a blocked loop, a slow broker): each tick still carries at most
    # MAX_CATCH_UP_SECONDS of events, never the whole gap.
    async with service(sink, SteppingClock(10.0), 100):
        await sink.wait_for(100)
    assert set(sink.batches) == {int(100 * MAX_CATCH_UP_SECONDS)}
