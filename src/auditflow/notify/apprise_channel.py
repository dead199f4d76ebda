"""The apprise channel: one message to every apprise URL of the channel (chat, push and mail services
that apprise supports). apprise is synchronous, so it runs in a worker thread bounded by the channel's
timeout; its URLs embed credentials, so they never appear in errors or logs."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any
from uuid import UUID

from auditflow.errors import ConfigError
from auditflow.notify.channels import SendResult
from auditflow.notify.render import digest_lines, facts, headline, intro, is_digest, plain_text, show
from auditflow.notify.routing import AppriseChannel, apprise_missing

if TYPE_CHECKING:
    import apprise

TITLE_LENGTH = 250
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def markdown_escape(text: str) -> str:
    """A value as literal markdown text: its punctuation escaped and `<`, `&` as entities, so it can
    neither format, link nor carry HTML into services that render markdown as HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def markdown(payload: dict[str, Any], delivery_id: UUID) -> str:
    """The message as markdown; every value from the alert escaped."""
    out = [f"**{markdown_escape(headline(payload))}**", "", markdown_escape(intro(payload)), ""]
    if is_digest(payload):
        lines, more = digest_lines(payload)
        for line in lines:
            text = markdown_escape(line.text)
            out.append(f"- [{text}]({line.url})" if line.url and " " not in line.url else f"- {text}")
        if more:
            out.append(f"\nand {more} more")
    else:
        alert = payload["alert"]
        name = markdown_escape(show(alert.get("rule_name")))
        out += [f"**{name}**: {markdown_escape(show(alert.get('description')))}", ""]
        out += [f"- **{label}**: {markdown_escape(value)}" for label, value in facts(alert)]
        if (url := payload.get("alert_url")) and " " not in url:
            out += ["", f"[Open the alert in AuditFlow]({url})"]
    out += ["", markdown_escape(f"Route {payload.get('route') or '-'} · delivery {delivery_id}")]
    return "\n".join(out) + "\n"


def _notify_type(payload: dict[str, Any]) -> str:
    if is_digest(payload):
        return "info"
    if payload["event"] == "resolved":
        return "success"
    severity = str(payload["alert"].get("severity"))
    return {"CRITICAL": "failure", "ERROR": "failure", "WARNING": "warning"}.get(severity, "info")


def _inner(seconds: float) -> float:
    """apprise's own deadline: early enough that it usually reports the timeout itself."""
    return max(seconds - 0.5, seconds * 0.75)


class AppriseSender:
    def __init__(self, channel: AppriseChannel) -> None:
        if (problem := apprise_missing()) is not None:
            raise ConfigError(problem)
        self.channel = channel
        self._urls = channel.urls()

    def _notify(self, title: str, body: str, notify_type: str, seconds: float) -> apprise.AppriseResult:
        import apprise

        # One Apprise object per message: several deliveries run at once in different threads.
        sender = apprise.Apprise()
        for url in self._urls:
            sender.add(url)
        return sender.notify(
            body=body,
            title=title,
            notify_type=apprise.NotifyType(notify_type),
            body_format=apprise.NotifyFormat(self.channel.format),
            timeout=seconds,
        )

    def _redact(self, text: str) -> str:
        for number, url in enumerate(self._urls, 1):
            text = text.replace(url, f"<apprise URL #{number}>")
        return text

    async def send(self, delivery_id: UUID, event: str, payload: dict[str, Any]) -> SendResult:
        title = headline(payload)[:TITLE_LENGTH]
        if self.channel.format == "markdown":
            body = markdown(payload, delivery_id)
        else:
            body = plain_text(payload, str(delivery_id))
        seconds = self.channel.timeout.total_seconds()
        try:
            # apprise's own deadline comes first and ends its work; the outer bound is for a thread that
            # overruns it (a thread cannot be stopped: the attempt then counts as failed regardless).
            result = await asyncio.wait_for(
                asyncio.to_thread(self._notify, title, body, _notify_type(payload), _inner(seconds)), seconds
            )
        except TimeoutError:
            return SendResult(False, f"apprise did not finish within {seconds:g} s")
        if result:
            return SendResult(True)
        problems = [entry.message for entry in result.logs() if entry.level in {"WARNING", "ERROR", "CRITICAL"}]
        status = result.status.name.lower()
        detail = "; ".join(problems)[:500] or "no detail"
        return SendResult(False, self._redact(f"apprise {status}: {detail}"))
