"""Test sends: a clearly fake alert sent at once through one channel's sender (never through the
outbox), so an operator can check a channel's address, secret and receiver. Used by
`POST /api/v1/channels/{name}/test`, the dashboard's "Send test" button and `auditflow notify test`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field

from auditflow.errors import ConfigError, NotFound
from auditflow.model.timeutil import format_utc, utcnow
from auditflow.notify.channels import SendResult, build_sender
from auditflow.notify.routing import Routing

if TYPE_CHECKING:  # aiohttp is imported only where a request is sent
    from auditflow.notify.http import HttpClient

TEST_RULE_ID = "auditflow-test"
# One test per channel this often at most, per process: a test cannot flood a receiver.
TEST_INTERVAL_S = 5.0


class ChannelTestResult(BaseModel):
    """What a test send answered. A failed send is still a successful request: `ok` is false and
    `error` says why, as the dispatcher would record it."""

    channel: str
    ok: bool
    error: str | None = Field(description="Why the send failed (status and start of the answer, or the timeout)")
    duration_ms: int = Field(description="From the start of the request to the answer or the failure")


def payload_for_test() -> dict[str, Any]:
    """The contract's `test` payload: the single-alert shape, with a sample alert no rule produced."""
    now = format_utc(utcnow())
    return {
        "event": "test",
        "route": None,
        "alert_url": None,
        "previous_occurrences": 0,
        "alert": {
            "alert_id": str(uuid4()),
            "rule_id": TEST_RULE_ID,
            "rule_name": "AuditFlow test notification",
            "rule_kind": "match",
            "severity": "INFO",
            "status": "open",
            "description": "A test sent to check this channel. It is not a real alert: no action is needed.",
            "group": {},
            "user_id": None,
            "server_hostname": None,
            "first_seen": now,
            "last_seen": now,
            "occurrences": 1,
            "tags": ["test"],
        },
    }


async def _send(routing: Routing, name: str, client: HttpClient, delivery_id: UUID) -> SendResult:
    # Built per test: a secret changed or removed since start-up is read (or reported) now.
    return await build_sender(routing.channels[name], client).send(delivery_id, "test", payload_for_test())


async def send_test(routing: Routing, name: str, client: HttpClient) -> ChannelTestResult:
    """Send the test payload through channel `name` now, with the channel's timeout. NotFound names
    an unknown channel; a secret that is missing now is reported as a failed send."""
    if name not in routing.channels:
        raise NotFound(f"channel {name!r} is not in the routing file")
    started = time.monotonic()
    try:
        result = await _send(routing, name, client, uuid4())
    except ConfigError as exc:  # the secret went missing since the routing file was loaded
        result = SendResult(False, str(exc))
    duration_ms = int((time.monotonic() - started) * 1000)
    return ChannelTestResult(channel=name, ok=result.ok, error=result.error, duration_ms=duration_ms)


class ChannelTestThrottled(Exception):
    """A test of this channel ran too recently; `retry_after` is whole seconds to wait."""

    def __init__(self, channel: str, retry_after: int) -> None:
        super().__init__(
            f"channel {channel!r} was tested less than {TEST_INTERVAL_S:g} s ago: retry in {retry_after} s"
        )
        self.channel = channel
        self.retry_after = retry_after


class ChannelTestThrottle:
    """At most one test per channel per `interval` seconds in this process. The slot is taken when a
    test starts, so concurrent requests cannot slip through together."""

    def __init__(self, interval: float = TEST_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def take(self, channel: str) -> None:
        """Reserve a test of `channel` now, or raise ChannelTestThrottled."""
        now = self._clock()
        # Forget channels whose interval is over (a renamed channel must not stay forever).
        self._last = {name: at for name, at in self._last.items() if now - at < self.interval}
        last = self._last.get(channel)
        if last is not None:
            wait = self.interval - (now - last)
            raise ChannelTestThrottled(channel, max(1, int(wait + 0.999)))
        self._last[channel] = now
