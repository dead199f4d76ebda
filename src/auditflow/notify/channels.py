"""What every channel sender is: `send(delivery_id, event, payload)` renders the outbox row's payload for
its channel and reports a SendResult; `build_sender` makes the right sender for a routing file's channel.
The dispatcher only ever talks to senders through this interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from auditflow.notify.routing import AppriseChannel, Channel, EmailChannel, SlackChannel, WebhookChannel

if TYPE_CHECKING:  # aiohttp is imported only where a request is sent
    from auditflow.notify.http import HttpClient


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait


class Sender(Protocol):
    async def send(self, delivery_id: UUID, event: str, payload: dict[str, Any]) -> SendResult:
        """Deliver one outbox row; the same delivery id on every attempt. Never raises for a delivery
        failure: the result says what went wrong (and how long the receiver asked to wait)."""
        ...


def build_sender(channel: Channel, client: HttpClient) -> Sender:
    """The sender for one channel of the routing file; resolves the channel's secrets now, so a missing
    one fails when the routing is applied (ConfigError), not at the first alert."""
    # Imported here: the sender modules import SendResult from this one.
    if isinstance(channel, WebhookChannel):
        from auditflow.notify.webhook import WebhookSender

        return WebhookSender(channel, client)
    if isinstance(channel, SlackChannel):
        from auditflow.notify.slack import SlackSender

        return SlackSender(channel, client)
    if isinstance(channel, EmailChannel):
        from auditflow.notify.smtp import EmailSender

        return EmailSender(channel)
    if isinstance(channel, AppriseChannel):
        from auditflow.notify.apprise_channel import AppriseSender

        return AppriseSender(channel)
    raise TypeError(f"no sender for channel type {type(channel).__name__}")
