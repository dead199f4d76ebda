"""Message brokers: `memory://` in-process, `amqp://` RabbitMQ."""

from __future__ import annotations

from auditflow.backends.broker.base import Broker, Delivery, LocalBody, MessageHandler
from auditflow.tls import TlsOptions

__all__ = ["Broker", "Delivery", "LocalBody", "MessageHandler", "create_broker"]


def create_broker(
    url: str,
    *,
    max_deliveries: int = 5,
    dead_letter_queue: str = "audit_dead_letter",
    tls: TlsOptions | None = None,
) -> Broker:
    """The broker for a URL scheme, with the options every broker has; a backend's own options
    (queue length, quorum queues, timeouts) are its class's keywords. Real backends import lazily
    so their extras stay optional."""
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from auditflow.backends.broker.memory import MemoryBroker

        return MemoryBroker(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
    if scheme in {"amqp", "amqps"}:
        from auditflow.backends.broker.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue, tls=tls)
    raise ValueError(f"unsupported broker URL scheme {scheme!r}")
