"""The one back-off policy and stop signal, with pinned jitter and a recording sleep: no test sleeps."""

from __future__ import annotations

import asyncio

import pytest

from auditflow.backends.broker.base import Delivery
from auditflow.backends.broker.batching import Outcome, run_handler
from auditflow.errors import BackendUnavailable
from auditflow.retry import Attempts, Backoff, call_with_recovery, pause, wait_unless_stopped


def _top(low: float, high: float) -> float:
    return high  # the largest delay the jitter allows


class RecordingSleep:
    """Stands in for `pause`: records each delay and stops after `stop_after` waits."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, stop: asyncio.Event, seconds: float) -> bool:
        self.delays.append(seconds)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            stop.set()
        return stop.is_set()


def test_delay_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(0.1, 1.0, uniform=_top)
    assert [backoff.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_is_full_and_the_floor_is_added() -> None:
    calls: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        calls.append((low, high))
        return low

    backoff = Backoff(0.05, 5.0, floor=0.05, uniform=record)
    assert backoff.delay(3) == pytest.approx(0.05)
    [(low, high)] = calls
    assert low == 0.0
    assert high == pytest.approx(0.4)


def test_a_long_outage_neither_overflows_nor_exceeds_the_maximum() -> None:
    backoff = Backoff(0.2, 30.0)
    assert backoff.ceiling(10_000) == 30.0
    assert all(0 <= backoff.delay(n) <= 30.0 for n in (0, 1, 40, 10_000))


@pytest.mark.parametrize(("initial", "maximum", "floor"), [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_nonsense_policies_are_refused(initial: float, maximum: float, floor: float) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(initial, maximum, floor)


async def test_attempts_count_up_and_reset() -> None:
    sleep = RecordingSleep()
    attempts = Attempts(Backoff(1.0, 8.0, uniform=_top), asyncio.Event(), sleep)
    for _ in range(3):
        assert not await attempts.pause()
    attempts.reset()
    await attempts.pause()
    assert sleep.delays == [1.0, 2.0, 4.0, 1.0]


async def test_pause_returns_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(1):
        assert await pause(stop, 3600)


async def test_wait_unless_stopped_tells_which_came_first() -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    ready.set()
    assert not await wait_unless_stopped(stop, ready.wait())
    stop.set()
    async with asyncio.timeout(1):
        assert await wait_unless_stopped(stop, asyncio.Event().wait())


class Dependency:
    def __init__(self) -> None:
        self.is_up = True
        self.downs: list[str] = []

    def mark_down(self, error: BaseException | str) -> None:
        self.downs.append(str(error))

    async def wait_up(self) -> None:
        return None


async def test_call_with_recovery_backs_off_between_attempts() -> None:
    sleep = RecordingSleep()
    dependency = Dependency()
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise BackendUnavailable(f"down #{calls}")

    await call_with_recovery(
        operation, dependency, asyncio.Event(), backoff=Backoff(0.1, 1.0, uniform=_top), sleep=sleep
    )
    assert calls == 4
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.4])
    assert dependency.downs == ["down #1", "down #2", "down #3"]


async def test_run_handler_holds_the_batch_with_back_off_until_stopped() -> None:
    sleep = RecordingSleep(stop_after=3)
    stop = asyncio.Event()
    calls = 0

    async def handler(batch: object) -> None:
        nonlocal calls
        calls += 1
        raise BackendUnavailable("store down")

    attempts = Attempts(Backoff(0.1, 5.0, uniform=_top), stop, sleep)
    outcome = await run_handler(handler, [Delivery(b"[]")], stop, attempts=attempts)
    assert outcome is Outcome.STOPPED
    assert calls == 3
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.4])
