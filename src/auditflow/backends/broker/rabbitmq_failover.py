"""A robust aio-pika connection over several RabbitMQ nodes of one cluster.

aio-pika's robust connection reconnects to the one URL it was made with. This subclass keeps the
list of node URLs and moves to the next one each time a connection closes or a connection attempt
fails, so the reconnect loop of the robust connection goes round the nodes until one answers; its
channels, queues and consumers are then restored on that node as they would be on the same one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

log = logging.getLogger("auditflow.broker.rabbitmq")


def node_address(url: URL | str) -> str:
    """host:port of a node URL, for messages: never the credentials."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


class FailoverConnection(RobustConnection):
    """A robust connection that tries `urls[first]` first, then the others in turn."""

    def __init__(self, urls: Sequence[str], first: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker URL")
        self.urls = [URL(url) for url in urls]
        self.current = first % len(self.urls)
        super().__init__(self.urls[self.current], **kwargs)

    @property
    def node(self) -> str:
        """host:port of the node this connection uses, or tries next while reconnecting."""
        return node_address(self.url)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Called when an established connection is lost and when an attempt to connect fails:
        # either way the next attempt goes to the next node.
        if len(self.urls) > 1 and not self.close_called:
            lost = self.node
            self.current = (self.current + 1) % len(self.urls)
            self.url = self.urls[self.current]
            log.info("RabbitMQ node %s is unavailable; the next connection attempt goes to %s", lost, self.node)
        await super()._on_connection_close(closing)
