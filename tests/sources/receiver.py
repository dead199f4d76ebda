"""A stand-in for the batch API on a loopback port: records every event it accepts (202), or answers
503 while `down` is set, so that sources can be tested against real HTTP without a pipeline."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, token: str = "secret") -> None:
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.down = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests += 1
                    if self.headers.get("Authorization") != f"Bearer {receiver.token}":
                        self._answer(401, {"detail": "bad token"})
                    elif receiver.down or self.path != "/api/v1/events":
                        self._answer(503, {"detail": "down for the test"})
                    else:
                        try:
                            batch = json.loads(body)
                        except ValueError:  # a body cut short by a killed sender
                            self._answer(400, {"detail": "not JSON"})
                            return
                        receiver.events.extend(batch)
                        self._answer(202, {"accepted": len(batch)})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)
