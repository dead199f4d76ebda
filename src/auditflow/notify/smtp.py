"""The email channel: a plain-text and an HTML part (every alert value escaped) sent through an SMTP
server with STARTTLS, implicit TLS or, to localhost only unless allowed, no TLS. The Message-ID derives
from the delivery id, so a re-sent message is recognisably the same one."""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from uuid import UUID

import aiosmtplib
from jinja2 import Environment, PackageLoader, StrictUndefined

from auditflow import __version__
from auditflow.errors import ConfigError
from auditflow.notify.channels import SendResult
from auditflow.notify.render import clip, digest_lines, facts, headline, intro, is_digest, one_line, plain_text, show
from auditflow.notify.routing import EmailChannel

log = logging.getLogger("auditflow.notify")

DELIVERY_HEADER = "X-AuditFlow-Delivery"
EVENT_HEADER = "X-AuditFlow-Event"
SUBJECT_LENGTH = 200
CLOSE_WAIT_S = 2.0

# Autoescaped: every alert value is text in the HTML part, whatever it contains.
_HTML = Environment(
    loader=PackageLoader("auditflow.notify", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
).get_template("email.html")


def _html(subject: str, delivery_id: UUID, payload: dict[str, Any]) -> str:
    values: dict[str, Any] = {
        "subject": subject,
        "headline": headline(payload),
        "intro": intro(payload),
        "route": payload.get("route") or "-",
        "delivery_id": str(delivery_id),
        "lines": None,
        "more": 0,
    }
    if is_digest(payload):
        values["lines"], values["more"] = digest_lines(payload)
    else:
        alert = payload["alert"]
        values |= {
            "rule_name": show(alert.get("rule_name")),
            "description": show(alert.get("description")),
            "facts": facts(alert),
            "alert_url": payload.get("alert_url"),
        }
    return _HTML.render(values)


def message_id(delivery_id: UUID, sender: str) -> str:
    """`<delivery id@sender's domain>`: the same on every attempt of one delivery."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "auditflow.invalid"
    return f"<{delivery_id}@{domain}>"


def build_message(channel: EmailChannel, delivery_id: UUID, event: str, payload: dict[str, Any]) -> EmailMessage:
    subject = clip(one_line(f"{channel.subject_prefix} {headline(payload)}"), SUBJECT_LENGTH)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channel.from_
    message["To"] = ", ".join(channel.to)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(delivery_id, channel.from_)
    message[DELIVERY_HEADER] = str(delivery_id)
    message[EVENT_HEADER] = event
    message["X-Mailer"] = f"AuditFlow/{__version__}"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(plain_text(payload, str(delivery_id)))
    message.add_alternative(_html(subject, delivery_id, payload), subtype="html")
    return message


def describe(exc: Exception) -> str:
    """What the server answered, with whether it was temporary (4xx) or permanent (5xx)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "all recipients refused: " + "; ".join(
            f"{refused.recipient}: {describe(refused)}" for refused in exc.recipients
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        kind = "temporary" if 400 <= exc.code < 500 else "permanent" if exc.code >= 500 else "unexpected"
        return f"SMTP {exc.code} ({kind}): {one_line(exc.message)[:300]}"
    return f"{exc.__class__.__name__}: {one_line(str(exc))[:300] or 'failed'}"


async def _closed(connection: Any, until: float) -> None:
    """Until the socket of a finished session is closed, for at most CLOSE_WAIT_S and never past `until`
    (the loop time at which the channel's timeout ends, which the delivery lease counts on). Over TLS the
    client's close only starts the close_notify exchange, and the socket closes when the server has
    answered it: a process that ends its event loop at once (`auditflow notify test`) would leave it open."""
    if connection is None:
        return
    loop = asyncio.get_running_loop()
    deadline = min(until, loop.time() + CLOSE_WAIT_S)
    # Polled: aiosmtplib offers no public hook for the moment its connection is lost.
    while connection.fileno() != -1 and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


class EmailSender:
    def __init__(self, channel: EmailChannel) -> None:
        self.channel = channel
        self._password = channel.password()
        self._tls: ssl.SSLContext | None = None
        if channel.security != "none":
            # Built once: reading the CA file per message would be wasted work.
            cafile = str(channel.ca_file) if channel.ca_file is not None else None
            try:
                self._tls = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"ca_file {channel.ca_file}: {exc}") from None

    async def send(self, delivery_id: UUID, event: str, payload: dict[str, Any]) -> SendResult:
        channel = self.channel
        message = build_message(channel, delivery_id, event, payload)
        seconds = channel.timeout.total_seconds()
        client = aiosmtplib.SMTP(
            hostname=channel.host,
            port=channel.smtp_port,
            use_tls=channel.security == "tls",
            start_tls=channel.security == "starttls",
            tls_context=self._tls,
            timeout=seconds,
        )
        connection: Any = None
        until = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout(seconds):
                async with client:  # connects, and on "starttls" upgrades the connection
                    connection = client.get_transport_info("socket")
                    if channel.username is not None:
                        password = self._password.get_secret_value() if self._password is not None else ""
                        await client.login(channel.username, password)
                    refused, _ = await client.send_message(message)
        except TimeoutError:
            return SendResult(False, f"no answer from {channel.host}:{channel.smtp_port} within {seconds:g} s")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(False, describe(exc))
        finally:
            await _closed(connection, until)
        if refused:
            # Some recipients have it: a retry would send it to them again, so this counts as sent.
            log.warning(
                "delivery %s: recipients refused: %s",
                delivery_id,
                "; ".join(f"{who}: {answer.code} {answer.message}" for who, answer in refused.items()),
            )
        return SendResult(True)
