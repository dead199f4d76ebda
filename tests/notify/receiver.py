"""A webhook receiver on a loopback port that verifies signatures, records every request, and
misbehaves on demand (an error status, 429 with Retry-After, a redirect, a hang past the timeout)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before answering: longer than the sender's timeout is a hang
    body: bytes = b"{}"


@dataclass(frozen=True)
class Request:
    key: str
    event: str
    signature_ok: bool
    body: dict[str, Any]
    raw: bytes


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """The check docs/notifications.md shows receivers."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - timestamp) <= tolerance and hmac.compare_digest(expected, parts["v1"])


class WebhookReceiver:
    """`plan(number, key)` decides the answer to the n-th request (from 1) carrying idempotency `key`."""

    def __init__(self, secret: str, plan: Callable[[int, str], Answer] | None = None) -> None:
        self.secret = secret
        self.plan = plan or (lambda _n, _key: Answer())
        self.requests: list[Request] = []
        self.accepted: list[Request] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                request = Request(
                    key=key,
                    event=self.headers.get("X-AuditFlow-Event", ""),
                    signature_ok=verify(receiver.secret, self.headers.get("X-AuditFlow-Signature", "t=0,v1="), raw),
                    body=json.loads(raw),
                    raw=raw,
                )
                with receiver.lock:
                    receiver.requests.append(request)
                    number = sum(1 for seen in receiver.requests if seen.key == key)
                answer = receiver.plan(number, key)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the sender gave up waiting and closed the connection
                    return
                if 200 <= answer.status < 300:
                    with receiver.lock:
                        receiver.accepted.append(request)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # the default of 5 drops concurrent connections for a second

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def accepted_keys(self) -> set[str]:
        with self.lock:
            return {request.key for request in self.accepted}

    def seen(self) -> list[Request]:
        with self.lock:
            return list(self.requests)
