"""What the syslog receiver does with one message: parse it to events (RFC 3164 lines without a
hostname included), count the outcome per transport, and queue the events in a bounded buffer that
submits them to the Ingestor in batches. The buffer is where back-pressure starts: TCP readers wait
for room, UDP datagrams are dropped and counted, so a slow or absent broker never costs unbounded
memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence

from prometheus_client import Counter

from auditflow.errors import BackendUnavailable
from auditflow.model.event import Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.emit import Message, clean_text
from auditflow.parsers.programs import PROGRAMS, dispatch, generic_entry, legacy_pam_entry
from auditflow.parsers.syslog import SyslogParser, rfc3164_time
from auditflow.services.ingest import Ingestor

log = logging.getLogger("auditflow.syslog")

SYSLOG_MESSAGES = Counter(
    "auditflow_syslog_messages",
    "Syslog messages received, by transport and outcome (events, no-event, no-hostname, dropped, or the"
    " reason the message was not understood)",
    ["transport", "outcome"],
)
SYSLOG_TRUNCATED = Counter(
    "auditflow_syslog_truncated_messages", "Syslog messages longer than the maximum size, cut to it", ["transport"]
)

# `<13>Dec  2 16:27:33 sshd[42]: ...`: RFC 3164 allows a relay to find no HOSTNAME (many devices and
# `logger --rfc3164` without a host send these). The sender's address is not the host: a relay's
# address would be taken for the origin, so such events carry no host and are counted.
_HOSTLESS = re.compile(
    r"(?:<\d{1,3}>)?([A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d) ([^\s\[\]:]+)(?:\[(\d{1,10})\])?: ?(.*)", re.DOTALL
)
_HOSTLESS_CANDIDATES = frozenset({"no-header", "unknown-program"})


class SyslogDecoder:
    """Syslog message bytes to events, with the outcome counted per transport."""

    def __init__(self, context: SourceContext | None = None) -> None:
        self.context = context or SourceContext()
        self._parser = SyslogParser(self.context)
        self._counters: dict[tuple[str, str], Counter] = {}

    def count(self, transport: str, outcome: str, amount: int = 1) -> None:
        counter = self._counters.get((transport, outcome))
        if counter is None:
            counter = self._counters[(transport, outcome)] = SYSLOG_MESSAGES.labels(transport, outcome)
        counter.inc(amount)

    def decode(self, data: bytes, transport: str) -> Sequence[Event]:
        # Undecodable bytes are kept as surrogates; the parsers store each as U+FFFD.
        line = data.decode("utf-8", "surrogateescape")
        outcome = self._parser.feed(line)
        if isinstance(outcome, Unparsed):
            if outcome.reason in _HOSTLESS_CANDIDATES:
                hostless = self._hostless(line)
                if hostless is not None:
                    self.count(transport, "no-hostname")
                    return hostless
            self.count(transport, outcome.reason)
            return ()
        self.count(transport, "events" if outcome else "no-event")
        return outcome

    def _hostless(self, line: str) -> Sequence[Event] | None:
        line = clean_text(line.rstrip("\r\n"))
        match = _HOSTLESS.match(line)
        if match is None:
            return None
        stamp, program, pid, text = match.groups()
        timestamp = rfc3164_time(stamp, self.context)
        if timestamp is None:
            return None
        service, parse = PROGRAMS.get(program) or legacy_pam_entry(program) or generic_entry(program)
        msg = Message(
            program,
            text,
            timestamp=timestamp,
            host=None,
            pid=int(pid) if pid is not None else None,
            raw=line,
            context=self.context,
            key=None,
            service=service,
        )
        outcome = dispatch(msg, parse)
        return None if isinstance(outcome, Unparsed) else outcome


class EventBuffer:
    """Events waiting for the broker, at most about `capacity` queued plus one batch being submitted.

    One task submits what is queued, after a short linger unless a full batch is already there;
    while the broker is down it holds its batch and retries, so the buffer fills and the receivers'
    back-pressure takes over."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        batch_size: int,
        linger: float,
        capacity: int,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.ingestor = ingestor
        self.batch_size = batch_size
        self.linger = linger
        self.capacity = max(capacity, batch_size)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._pending: list[Event] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._held = 0  # events of the batch being submitted
        self.submitted = 0

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.capacity

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._submit_loop(), name="syslog-submit")

    def offer(self, events: Sequence[Event]) -> bool:
        """Queue `events` if there is room now (UDP); False when full."""
        if self.full:
            return False
        self._pending.extend(events)
        self._ready.set()
        if self.full:
            self._room.clear()
        return True

    async def put(self, events: Sequence[Event]) -> None:
        """Queue `events`, waiting for room first (TCP: the connection is not read meanwhile)."""
        while not self.offer(events):
            await self._room.wait()

    async def aclose(self, grace: float) -> None:
        """Submit what is queued (within `grace` seconds), then stop."""
        self._closing = True
        self._ready.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if lost := len(self._pending) + self._held:
                log.error("syslog: %d events not submitted at shutdown (broker unavailable)", lost)

    async def _submit_loop(self) -> None:
        while True:
            await self._ready.wait()
            if not self._closing and len(self._pending) < self.batch_size:
                await asyncio.sleep(self.linger)
            batch, self._pending = self._pending, []
            self._ready.clear()
            self._room.set()
            if batch:
                await self._submit(batch)
            if self._closing and not self._pending:
                return

    async def _submit(self, batch: list[Event]) -> None:
        delay = self.retry_initial
        self._held = len(batch)
        while True:
            try:
                await self.ingestor.submit(batch, source="syslog")
            except BackendUnavailable as exc:
                log.warning("syslog: holding %d events, the broker is unavailable: %s", len(batch), exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ingestor.dependency.wait_up(), delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self.submitted += len(batch)
            self._held = 0
            return
