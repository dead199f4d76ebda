"""A real SMTP server (aiosmtpd) on a free loopback port for the email channel's tests: STARTTLS or
implicit TLS with a certificate made for the test by openssl, AUTH with one account, and answers to
DATA chosen per message (to refuse the first one with 451, say)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USERNAME = "alerts"
PASSWORD = "smtp-pass-0123"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA, for the client's ca_file)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the email TLS tests need the openssl command"
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=auditflow-test-smtp",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast(int, probe.getsockname()[1])


@dataclass(frozen=True)
class Received:
    message: EmailMessage
    sender: str
    recipients: list[str]
    tls: bool  # the message came over an encrypted connection
    login: str | None  # the authenticated user


class SmtpServer:
    """`answer(n)` is the reply to the n-th DATA (from 1); None accepts the message."""

    def __init__(
        self,
        *,
        certificate: Certificate | None = None,
        implicit_tls: bool = False,
        auth: bool = False,
        answer: Callable[[int], str | None] | None = None,
    ) -> None:
        self.received: list[Received] = []
        self.attempts = 0
        self.lock = threading.Lock()
        self.answer = answer or (lambda _n: None)
        context = None
        if certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certificate.cert, certificate.key)
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs |= {"authenticator": self._authenticate, "auth_required": True}
            if implicit_tls:
                # aiosmtpd only counts STARTTLS as TLS; here the whole connection is (and it warns).
                kwargs["auth_require_tls"] = False
        if implicit_tls:
            kwargs["ssl_context"] = context
        elif context is not None:
            kwargs |= {"tls_context": context, "require_starttls": True}
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    @staticmethod
    def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USERNAME.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.attempts += 1
            number = self.attempts
        reply = self.answer(number)
        if reply is not None:
            return reply
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        received = Received(
            message=message_from_bytes(raw, policy=policy.default),
            sender=str(envelope.mail_from),
            recipients=list(envelope.rcpt_tos),
            tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
            login=login,
        )
        with self.lock:
            self.received.append(received)
        return "250 OK"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)
