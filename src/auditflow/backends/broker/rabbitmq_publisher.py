"""Publishing on the RabbitMQ broker: persistent messages sent together and their publisher
confirms awaited together, for plain publishes, dead letters and classic-queue republishes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic

from auditflow.backends.broker.base import Delivery
from auditflow.backends.broker.batching import COUNT_HEADER, dead_letter_headers

PERSISTENT = 2
PUBLISH_WINDOW = 2000  # publishes awaiting their confirm at once; bounds memory, not throughput

Message = tuple[bytes, Basic.Properties]


def plain_messages(bodies: Sequence[bytes], headers: Mapping[str, Any] | None) -> list[Message]:
    properties = Basic.Properties(delivery_mode=PERSISTENT, headers=dict(headers) if headers else None)
    return [(body, properties) for body in bodies]


def dead_letter_messages(queue: str, deliveries: Sequence[Delivery]) -> list[Message]:
    """Deliveries bound for the dead-letter queue, with the reason and origin in headers."""
    return [
        (
            d.body,
            Basic.Properties(
                delivery_mode=PERSISTENT,
                headers=dead_letter_headers(d.headers, d.dead_letter_reason or "unspecified", queue),
            ),
        )
        for d in deliveries
    ]


def republished_messages(deliveries: Sequence[Delivery]) -> list[Message]:
    """Failed deliveries of a classic queue, carrying their delivery count in a header."""
    return [
        (d.body, Basic.Properties(delivery_mode=PERSISTENT, headers={**d.headers, COUNT_HEADER: d.delivery_count + 1}))
        for d in deliveries
    ]


async def publish_confirmed(
    robust_channel: AbstractRobustChannel, exchange: str, routing_key: str, items: Sequence[Message]
) -> None:
    """Send every message, then await the confirms together: the broker acks in batches, so
    throughput is bounded by bandwidth rather than by one round trip per message. The caller
    bounds the time and maps the driver's errors."""
    # The concrete channel: its basic_publish has `wait`, the abstract one does not.
    channel = cast(aiormq.Channel, await robust_channel.get_underlay_channel())
    for start in range(0, len(items), PUBLISH_WINDOW):
        await asyncio.gather(
            *(
                # wait=False: do not hold the channel lock until the socket drained
                # each message; the confirm below is what makes it safe.
                channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=props,
                    mandatory=True,
                    wait=False,
                )
                for body, props in items[start : start + PUBLISH_WINDOW]
            )
        )
