"""The notify scenario's webhook receiver: a minimal HTTP/1.1 server on raw asyncio streams that
answers every POST with 200 at once and records its `Idempotency-Key` and arrival time. It runs as a
child process (`python -m auditflow.bench.receiver`), so that it does not share a core's event loop
with the dispatcher it measures; `GET /received` returns what it recorded as JSON.

Only for loopback benchmarks: no TLS, no signature check (a receiver's verification cost is not
what the bench measures), keep-alive connections, bodies read by Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess  # nosec B404  # starts this module in our own interpreter
import sys
import time
from dataclasses import dataclass, field

import httpx
import orjson

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []  # (idempotency key, arrival time.time())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                request_line, _, header_block = head.partition(b"\r\n")
                headers = {}
                for line in header_block.split(b"\r\n"):
                    name, sep, value = line.partition(b":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                if length:
                    await reader.readexactly(length)
                method, _, rest = request_line.partition(b" ")
                if method == b"GET" and rest.startswith(b"/received"):
                    body = orjson.dumps(self.received)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                elif method == b"POST":
                    self.received.append((headers.get(b"idempotency-key", b"").decode(), now))
                    writer.write(_OK)
                else:
                    writer.write(_BAD)
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _serve() -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        # Until the parent closes our standard input.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@dataclass
class ReceiverProcess:
    """The receiver as a child process: `url` to POST to, `received()` to read what it recorded."""

    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    _client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=60.0))

    def start(self) -> ReceiverProcess:
        self.proc = subprocess.Popen(  # nosec B603  # our own interpreter and module, no shell, no input
            [sys.executable, "-m", "auditflow.bench.receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"the bench receiver did not start (exit {self.proc.wait()})")
        self.port = int(line)
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def received(self) -> list[tuple[str, float]]:
        response = await self._client.get(self.url("/received"))
        response.raise_for_status()
        return [(key, at) for key, at in orjson.loads(response.content)]

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(_serve())
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(_serve())
