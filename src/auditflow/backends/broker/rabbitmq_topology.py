"""Queues and exchanges of the RabbitMQ broker: quorum queues with a classic fallback, the
dead-letter fanout exchange, and the arguments a consumer channel needs to declare a queue again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustConnection

from auditflow.backends.broker.rabbitmq_errors import ChannelRefused, ignored_errors, mapped_errors
from auditflow.errors import BackendError, BackendUnavailable

log = logging.getLogger("auditflow.broker.rabbitmq")


class RabbitMQTopology:
    """What is declared on the server, remembered so that each queue is declared once per
    connection (and again after `forget()`, when the server may have lost it)."""

    def __init__(
        self,
        connection: Callable[[], AbstractRobustConnection],
        where: str,
        *,
        quorum: bool,
        max_deliveries: int,
        dead_letter_queue: str,
    ) -> None:
        self._connection = connection
        self._where = where
        self.quorum = quorum
        self.max_deliveries = max_deliveries
        self.dead_letter_queue = dead_letter_queue
        self.dead_letter_exchange = f"{dead_letter_queue}.dlx"
        self.queue_types: dict[str, str] = {}  # queue -> "quorum" | "classic" | "existing"
        self._queue_args: dict[str, dict[str, Any]] = {}

    def forget(self) -> None:
        self.queue_types.clear()
        self._queue_args.clear()

    @contextlib.asynccontextmanager
    async def scratch_channel(self, operation: str) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A plain channel for one declaration, its errors mapped: the server closes a channel on a
        refused declare, and a robust channel would reopen and replay it."""
        transport = self._connection().transport
        if transport is None:
            raise BackendUnavailable(f"RabbitMQ at {self._where} is reconnecting")
        with mapped_errors(self._where, "open a channel"):
            channel = await transport.connection.channel()
        try:
            with mapped_errors(self._where, operation):
                yield channel
        finally:
            if not channel.is_closed:
                with ignored_errors():
                    await channel.close()

    async def _declare_durable(self, name: str, arguments: dict[str, Any]) -> str:
        """Declare a durable queue, quorum first; returns the kind that the server accepted."""
        attempts: list[tuple[str, dict[str, Any]]] = []
        if self.quorum:
            # No x-quorum-initial-group-size: the server puts a replica on every cluster node.
            attempts.append(("quorum", {**arguments, "x-queue-type": "quorum"}))
        attempts.append(("classic", arguments))
        for kind, args in attempts:
            try:
                async with self.scratch_channel(f"declare {name}") as channel:
                    await channel.queue_declare(name, durable=True, arguments=args)
            except ChannelRefused as exc:
                log.info("queue %s: the server refused a %s queue (%s)", name, kind, exc)
                continue
            self._queue_args[name] = {"durable": True, "arguments": args}
            return kind
        # Exists with other arguments (an older max_deliveries, another type): use it as it is.
        try:
            async with self.scratch_channel(f"declare {name}") as channel:
                await channel.queue_declare(name, passive=True)
        except ChannelRefused as exc:
            raise BackendError(f"RabbitMQ refuses to declare queue {name}: {exc}") from exc
        log.warning("queue %s exists with other arguments than configured; using it unchanged", name)
        self._queue_args[name] = {"passive": True}
        return "existing"

    async def declare_dead_letter(self) -> None:
        async with self.scratch_channel("dead-letter exchange") as channel:
            await channel.exchange_declare(self.dead_letter_exchange, exchange_type="fanout", durable=True)
        self.queue_types[self.dead_letter_queue] = await self._declare_durable(self.dead_letter_queue, {})
        async with self.scratch_channel("dead-letter binding") as channel:
            await channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key="")

    async def declare(self, queue: str) -> None:
        if queue in self.queue_types:
            return
        if self.dead_letter_queue not in self.queue_types:  # forgotten after a failed publish
            await self.declare_dead_letter()
        if queue == self.dead_letter_queue:
            return  # declared above, without a dead-letter exchange of its own (no loop)
        arguments: dict[str, Any] = {"x-dead-letter-exchange": self.dead_letter_exchange}
        if self.quorum:
            arguments["x-delivery-limit"] = self.max_deliveries + 1
        kind = await self._declare_durable(queue, arguments)
        if kind == "classic":
            arguments.pop("x-delivery-limit", None)  # a quorum-only argument
        self.queue_types[queue] = kind

    def queue_arguments(self, queue: str) -> dict[str, Any]:
        """How a consumer channel declares `queue` so that a reconnect can recreate it."""
        return self._queue_args.get(queue, {"passive": True})

    async def queue_depth(self, queue: str) -> int:
        try:
            async with self.scratch_channel("queue depth") as channel:
                result = await channel.queue_declare(queue, passive=True)
        except ChannelRefused:
            return 0  # no such queue: nothing waiting
        return int(result.message_count or 0)
