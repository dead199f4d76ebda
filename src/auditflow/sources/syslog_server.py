"""The syslog receiver of `auditflow serve syslog`: UDP (one message per datagram) and TCP on the same
port, optionally TLS on its own port, feeding the broker through the Ingestor like the ingest API.

TCP framing is chosen per connection from its first byte (RFC 6587): a digit starts octet counting
(`123 <34>1 ...`, also what RFC 5425 prescribes over TLS), anything else is one message per line.
Messages longer than the maximum are cut and counted; connections are bounded in number and closed
when idle; a framing error closes its connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from auditflow.config import Settings
from auditflow.errors import ConfigError
from auditflow.services.ingest import Ingestor
from auditflow.sources.syslog_intake import SYSLOG_TRUNCATED, EventBuffer, SyslogDecoder

log = logging.getLogger("auditflow.syslog")

SYSLOG_CONNECTIONS = Gauge("auditflow_syslog_connections", "Open syslog stream connections", ["transport"])
SYSLOG_REFUSED = Counter(
    "auditflow_syslog_connections_refused", "Syslog connections closed at once: the limit was reached", ["transport"]
)

# An octet count longer than this is not a syslog frame header (the maximum size has 7 digits).
_MAX_COUNT_DIGITS = 9


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    truncated: bool


class SyslogServer:
    """UDP and TCP (and TLS) listeners whose messages go through one decoder and one event buffer."""

    def __init__(self, settings: Settings, ingestor: Ingestor) -> None:
        self.settings = settings
        self.host = settings.syslog_host or settings.host
        self.max_message = settings.syslog_max_message
        self.decoder = SyslogDecoder()
        self.buffer = EventBuffer(
            ingestor,
            batch_size=settings.publish_batch_size,
            linger=settings.syslog_linger_ms / 1000,
            capacity=settings.syslog_buffer_events,
        )
        self.port: int | None = None  # the bound UDP and TCP port (settings may ask for 0: any free one)
        self.tls_port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener (ConfigError naming the address when one cannot be bound)."""
        tls = self._tls_context()
        self.buffer.start()
        # Port 0 picks a free TCP port; UDP then takes the same number, retried if it is taken there.
        for _ in range(20):
            tcp = await self._listen_tcp(self.settings.syslog_port, None, "tcp")
            self.port = tcp.sockets[0].getsockname()[1]
            try:
                await self._listen_udp(self.port)
            except OSError as exc:
                tcp.close()
                if self.settings.syslog_port != 0 or exc.errno != errno.EADDRINUSE:
                    raise ConfigError(f"cannot listen for syslog on UDP {self.host}:{self.port}: {exc}") from None
                continue
            self._servers.append(tcp)
            break
        else:
            raise ConfigError(f"cannot find a port free for both UDP and TCP syslog on {self.host}")
        if tls is not None:
            server = await self._listen_tcp(self.settings.syslog_tls_port, tls, "tls")
            self._servers.append(server)
            self.tls_port = server.sockets[0].getsockname()[1]
        log.info("syslog on UDP and TCP %s:%s%s", self.host, self.port, f", TLS {self.tls_port}" if tls else "")

    async def aclose(self) -> None:
        """Stop receiving, end the connections, then submit what is buffered."""
        if self._udp is not None:
            self._udp.close()
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await self.buffer.aclose(self.settings.shutdown_grace / 2)

    def _tls_context(self) -> ssl.SSLContext | None:
        cert, key = self.settings.syslog_tls_cert, self.settings.syslog_tls_key
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"syslog TLS certificate {cert} or key {key} cannot be loaded: {exc}") from None
        return context

    async def _listen_tcp(self, port: int, tls: ssl.SSLContext | None, transport: str) -> asyncio.Server:
        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._client(reader, writer, transport)

        try:
            return await asyncio.start_server(
                client, self.host, port, ssl=tls, limit=self.max_message + 1, reuse_address=True
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen for syslog on {transport.upper()} {self.host}:{port}: {exc}") from None

    async def _listen_udp(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpReceiver(self), local_addr=(self.host, port))
        self._udp = transport

    # --- streams ----------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str) -> None:
        if len(self._connections) >= self.settings.syslog_max_connections:
            SYSLOG_REFUSED.labels(transport).inc()
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        gauge = SYSLOG_CONNECTIONS.labels(transport)
        gauge.inc()
        try:
            async for frame in self._frames(reader, transport):
                if frame.truncated:
                    SYSLOG_TRUNCATED.labels(transport).inc()
                events = self.decoder.decode(frame.data, transport)
                if events:
                    # Waiting here stops reading this connection: TCP flow control holds the sender.
                    await self.buffer.put(events)
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # idle, reset, or cut mid-frame: the connection ends, what was complete is kept
        finally:
            gauge.dec()
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read(self, reader: asyncio.StreamReader, separator: bytes) -> bytes:
        async with asyncio.timeout(self.settings.syslog_idle_timeout):
            return await reader.readuntil(separator)

    async def _exactly(self, reader: asyncio.StreamReader, count: int) -> bytes:
        async with asyncio.timeout(self.settings.syslog_idle_timeout):
            return await reader.readexactly(count)

    async def _frames(self, reader: asyncio.StreamReader, transport: str) -> AsyncIterator[Frame]:
        try:
            first = await self._exactly(reader, 1)
        except asyncio.IncompleteReadError:
            return
        if first.isdigit():
            async for frame in self._counted_frames(reader, first, transport):
                yield frame
        else:
            async for frame in self._line_frames(reader, first):
                yield frame

    async def _line_frames(self, reader: asyncio.StreamReader, prefix: bytes) -> AsyncIterator[Frame]:
        while True:
            try:
                line = prefix + await self._read(reader, b"\n")
            except asyncio.IncompleteReadError as exc:
                rest = prefix + exc.partial  # a last line without its newline, at close
                if rest.strip():
                    yield Frame(rest[: self.max_message], len(rest) > self.max_message)
                return
            except asyncio.LimitOverrunError:
                # No newline within the maximum: keep the first part, skip to the next newline.
                head = prefix + await self._exactly(reader, self.max_message - len(prefix))
                yield Frame(head, True)
                await self._skip_line(reader)
                prefix = b""
                continue
            prefix = b""
            line = line.rstrip(b"\r\n")
            if line:
                yield Frame(line, False)

    async def _skip_line(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                await self._read(reader, b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._exactly(reader, exc.consumed)

    async def _counted_frames(self, reader: asyncio.StreamReader, first: bytes, transport: str) -> AsyncIterator[Frame]:
        prefix = first
        while True:
            try:
                header = prefix + await self._read(reader, b" ")
            except asyncio.IncompleteReadError as exc:
                if (prefix + exc.partial).strip():
                    self.decoder.count(transport, "bad-frame")
                return
            except asyncio.LimitOverrunError:
                header = b"?"
            prefix = b""
            count_text = header[:-1].lstrip(b"\r\n")
            if not count_text.isdigit() or len(count_text) > _MAX_COUNT_DIGITS:
                # The stream cannot be resynchronised after a bad count: end this connection.
                self.decoder.count(transport, "bad-frame")
                log.warning("syslog %s: bad octet-counting frame header %r, closing", transport, header[:20])
                return
            count = int(count_text)
            data = await self._exactly(reader, min(count, self.max_message))
            for remaining in range(count - len(data), 0, -self.max_message):
                await self._exactly(reader, min(remaining, self.max_message))
            yield Frame(data, count > self.max_message)


class _UdpReceiver(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        server = self.server
        if server.buffer.full:
            # UDP has no flow control: drop before spending time on parsing, and count it.
            server.decoder.count("udp", "dropped")
            return
        if len(data) > server.max_message:
            data = data[: server.max_message]
            SYSLOG_TRUNCATED.labels("udp").inc()
        events = server.decoder.decode(data.rstrip(b"\r\n\x00"), "udp")
        if events:
            server.buffer.offer(events)

    def error_received(self, exc: Exception) -> None:
        log.debug("syslog UDP: %s", exc)


__all__ = ["SyslogServer"]
