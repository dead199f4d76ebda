"""The webhook channel: POST the delivery as JSON, signed with HMAC-SHA256 over the timestamp and
the body, with the delivery id as idempotency key, so a receiver can verify and de-duplicate."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from uuid import UUID

import orjson

from auditflow import __version__
from auditflow.notify.channels import SendResult
from auditflow.notify.http import HttpClient, PostError
from auditflow.notify.routing import WebhookChannel

__all__ = ["SendResult", "WebhookSender", "message_body", "parse_retry_after", "post", "sign"]

SIGNATURE_HEADER = "X-AuditFlow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-AuditFlow-Event"
_RETRY_AFTER_STATUSES = {429, 503}
USER_AGENT = f"AuditFlow/{__version__}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`: the timestamp lets receivers refuse
    replays of an old, validly signed message."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def message_body(delivery_id: UUID | str, payload: dict[str, Any]) -> bytes:
    """The same bytes on every attempt of a delivery (sorted keys: JSONB does not keep their order)."""
    return orjson.dumps({"delivery_id": str(delivery_id), **payload}, option=orjson.OPT_SORT_KEYS)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max((when - current).total_seconds(), 0.0)


async def post(client: HttpClient, url: str, body: bytes, headers: dict[str, str], seconds: float) -> SendResult:
    """POST `body` once: 2xx is sent; a redirect is not followed; 429/503 carry their Retry-After; any
    other answer, a connection error or no answer within `seconds` is a failure naming the cause."""
    try:
        # The bound covers the whole exchange, so it also stops a receiver that trickles bytes.
        response = await client.post(url, body, headers, seconds)
    except TimeoutError:
        return SendResult(False, f"no answer within {seconds:g} s")
    except PostError as exc:
        return SendResult(False, f"{exc.kind}: {exc or 'request failed'}")
    if response.is_success:
        return SendResult(True)
    if response.is_redirect:
        # Following would send the alert wherever the receiver points: refuse it.
        where = response.headers.get("location", "?")
        return SendResult(False, f"HTTP {response.status} redirect to {where} not followed")
    retry_after = None
    if response.status in _RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return SendResult(False, f"HTTP {response.status}: {response.text}", retry_after)


class WebhookSender:
    def __init__(self, channel: WebhookChannel, client: HttpClient) -> None:
        self.channel = channel
        self.client = client
        # The key's HMAC state, computed once: each message copies it (what `sign` does, without
        # preparing the key every time).
        self._keyed = hmac.new(channel.secret().get_secret_value().encode(), digestmod=hashlib.sha256)

    def _sign(self, timestamp: int, body: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(b"%d." % timestamp)
        mac.update(body)
        return f"t={timestamp},v1={mac.hexdigest()}"

    async def send(self, delivery_id: UUID, event: str, payload: dict[str, Any]) -> SendResult:
        key = str(delivery_id)
        body = message_body(key, payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: key,
            EVENT_HEADER: event,
            SIGNATURE_HEADER: self._sign(int(time.time()), body),
        }
        return await post(self.client, self.channel.url, body, headers, self.channel.timeout.total_seconds())
