"""The Slack channel: a Block Kit message to an incoming webhook. Every text is cut to Block Kit's
documented limits (the webhook refuses a message over any of them with `invalid_blocks`), values are
escaped for mrkdwn, and a digest lists its first alerts and how many more there are."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from auditflow.notify.channels import SendResult
from auditflow.notify.http import HttpClient
from auditflow.notify.render import ELLIPSIS, clip, digest_lines, facts, headline, intro, is_digest, one_line, show
from auditflow.notify.routing import SlackChannel
from auditflow.notify.webhook import USER_AGENT, post

# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks).
HEADER_TEXT = 150
SECTION_TEXT = 3000
FIELD_TEXT = 2000
SECTION_FIELDS = 10
MESSAGE_BLOCKS = 50
BUTTON_TEXT = 75
BUTTON_URL = 3000
CONTEXT_TEXT = 3000
FALLBACK_TEXT = 3000  # the notification text; Slack itself cuts at 40,000
DIGEST_ITEMS = 20  # lines a digest shows; the rest is "and N more"
DIGEST_LINE = 300
DIGEST_LINK_URL = 1000  # a longer link is left out, so that a line stays short

TITLES = {
    "new": "New",
    "escalation": "Escalation",
    "reopened": "Reopened",
    "resolved": "Resolved",
    "test": "Test",
}


def escape(text: str) -> str:
    """Slack's three control characters, so that a value can neither link nor mention anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(raw: str, limit: int) -> str:
    """`raw` escaped for mrkdwn in at most `limit` characters; an entity is never cut in half."""
    text = escape(raw)
    if len(text) <= limit:
        return text
    pieces: list[str] = []
    size = 0
    for char in raw:
        piece = escape(char)
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces) + ELLIPSIS


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit) or "-", "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _link(url: str | None, label: str) -> str:
    """`<url|label>` when the URL can be written in mrkdwn, else the label alone (label already escaped)."""
    if not url or len(url) > DIGEST_LINK_URL or any(c in url for c in "|<> "):
        return label
    return f"<{url}|{label}>"


def _field(label: str, value: str) -> dict[str, Any]:
    prefix = f"*{label}*\n"
    return _mrkdwn(prefix + fit(value, FIELD_TEXT - len(prefix)))


def _single(payload: dict[str, Any]) -> list[dict[str, Any]]:
    alert = payload["alert"]
    event = TITLES.get(payload["event"], str(payload["event"]))
    title = f"{event}: {show(alert.get('severity'))} {show(alert.get('rule_name'))}"
    description = show(alert.get("description"))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(one_line(title), HEADER_TEXT)},
        {"type": "section", "text": _mrkdwn(fit(f"{intro(payload)}\n{description}", SECTION_TEXT))},
        {
            "type": "section",
            "fields": [_field(label, value) for label, value in facts(alert)][:SECTION_FIELDS],
        },
    ]
    url = payload.get("alert_url")
    if url and len(url) <= BUTTON_URL:  # a cut URL would lead nowhere: no button instead
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": _plain("Open in AuditFlow", BUTTON_TEXT), "url": url}],
            }
        )
    return blocks


def _digest(payload: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(headline(payload), HEADER_TEXT)},
        {"type": "section", "text": _mrkdwn(fit(intro(payload), SECTION_TEXT))},
    ]
    lines, more = digest_lines(payload, DIGEST_ITEMS)
    chunk: list[str] = []
    for line in lines:
        entry = "• " + _link(line.url, fit(line.text, DIGEST_LINE))
        if chunk and len("\n".join([*chunk, entry])) > SECTION_TEXT:
            blocks.append({"type": "section", "text": _mrkdwn("\n".join(chunk))})
            chunk = []
        chunk.append(entry)
    if chunk:
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(chunk))})
    if more:
        blocks.append({"type": "section", "text": _mrkdwn(f"and {more} more")})
    return blocks


def slack_message(delivery_id: UUID, payload: dict[str, Any]) -> dict[str, Any]:
    """The webhook body: Block Kit blocks within every limit, and `text` for the notification itself."""
    blocks = _digest(payload) if is_digest(payload) else _single(payload)
    footer = f"Route {payload.get('route') or '-'} · delivery {delivery_id}"
    blocks.append({"type": "context", "elements": [_mrkdwn(fit(footer, CONTEXT_TEXT))]})
    if len(blocks) > MESSAGE_BLOCKS:  # not reached with the layouts above; never send more
        blocks = [*blocks[: MESSAGE_BLOCKS - 1], blocks[-1]]
    return {"text": fit(headline(payload), FALLBACK_TEXT), "blocks": blocks}


class SlackSender:
    def __init__(self, channel: SlackChannel, client: HttpClient) -> None:
        self.channel = channel
        self.client = client
        self._url = channel.webhook_url()

    async def send(self, delivery_id: UUID, event: str, payload: dict[str, Any]) -> SendResult:
        # Incoming webhooks have no idempotency key: a repeat (at-least-once) shows twice in the channel.
        body = orjson.dumps(slack_message(delivery_id, payload))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        return await post(
            self.client, self._url.get_secret_value(), body, headers, self.channel.timeout.total_seconds()
        )
