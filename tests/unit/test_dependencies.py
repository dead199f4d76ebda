from __future__ import annotations

import asyncio
import logging

import pytest

from auditflow.dependencies import Dependency, redact_url
from auditflow.errors import BackendUnavailable
from auditflow.retry import call_with_recovery


class FlakyBackend:
    """Fails `failures` times, then works; can be broken again."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.pings = 0
        self.broken = False

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise BackendUnavailable(f"refused #{self.starts}")

    async def ping(self) -> None:
        self.pings += 1
        if self.broken:
            raise BackendUnavailable("gone")


def _dependency(backend: FlakyBackend, **kwargs: float) -> Dependency:
    return Dependency(
        "state",
        start=backend.start,
        ping=backend.ping,
        critical=True,
        impact="detection paused",
        detail="redis://h:6379",
        retry_initial=0.001,
        retry_max=0.01,
        ping_interval=kwargs.get("ping_interval", 0.01),
    )


def test_redact_url_drops_credentials() -> None:
    assert redact_url("amqp://user:secret@rabbit:5672/vhost") == "amqp://rabbit:5672"
    assert redact_url("sqlite:///data/x.db") == "sqlite:///data/x.db"


async def test_down_at_start_then_up_without_restart(caplog: pytest.LogCaptureFixture) -> None:
    backend = FlakyBackend(failures=3)
    dependency = _dependency(backend)
    status = dependency.status()
    assert status.status == "down"
    assert status.impact == "detection paused"
    caplog.set_level(logging.INFO, "auditflow.dependencies")
    dependency.run()
    async with asyncio.timeout(5):
        await dependency.wait_up()
    assert backend.starts == 4
    assert dependency.status().last_error is None
    assert any("unavailable, retrying" in r.getMessage() for r in caplog.records)
    await dependency.aclose()


async def test_a_failing_ping_marks_down_and_recovery_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "auditflow.dependencies")
    backend = FlakyBackend(failures=0)
    dependency = _dependency(backend)
    dependency.run()
    async with asyncio.timeout(5):
        await dependency.wait_up()
        backend.broken = True
        while dependency.is_up:
            await asyncio.sleep(0.005)
        assert dependency.status().last_error == "gone"
        backend.broken = False
        await dependency.wait_up()
    messages = [r.getMessage() for r in caplog.records]
    assert "state is down: gone" in messages
    assert "state is back up" in messages
    await dependency.aclose()


async def test_call_with_recovery_holds_the_work_until_the_dependency_is_back() -> None:
    backend = FlakyBackend(failures=0)
    dependency = _dependency(backend)
    dependency.run()
    await dependency.wait_up()
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise BackendUnavailable("connection reset")

    async with asyncio.timeout(5):
        await call_with_recovery(operation, dependency, asyncio.Event())
    assert calls == 3
    await dependency.aclose()


async def test_call_with_recovery_gives_up_on_shutdown() -> None:
    backend = FlakyBackend(failures=10_000)
    dependency = _dependency(backend)
    dependency.run()
    stopping = asyncio.Event()

    async def operation() -> None:
        raise BackendUnavailable("still down")

    task = asyncio.create_task(call_with_recovery(operation, dependency, stopping))
    await asyncio.sleep(0.05)
    assert not task.done()
    stopping.set()
    with pytest.raises(BackendUnavailable):
        async with asyncio.timeout(5):
            await task
    await dependency.aclose()
