"""Message brokers: `memory://` in-process, `amqp://` RabbitMQ."""

from __future__ import annotations

from auditflow.backends.broker.base import Broker, Delivery, MessageHandler

__all__ = ["Broker", "Delivery", "MessageHandler", "create_broker"]


def create_broker(url: str, **options: object) -> Broker:
    """The broker for a URL scheme. Real backends import lazily so their extras stay optional."""
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from auditflow.backends.broker.memory import MemoryBroker

        return MemoryBroker(url, **options)  # type: ignore[arg-type]
    if scheme in {"amqp", "amqps"}:
        from auditflow.backends.broker.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(url, **options)  # type: ignore[arg-type]
    raise ValueError(f"unsupported broker URL scheme {scheme!r}")
