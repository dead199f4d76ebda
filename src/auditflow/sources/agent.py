"""The log agent: follows files, turns their lines into events and posts them in batches to the
ingest API. A file's offset is checkpointed only once the API answered 202 for the batch holding
its line, and event ids derive from (file identity, offset): after a kill -9 the agent resumes from
the checkpoint, and what it sends again carries the ids it had, so the pipeline drops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from auditflow.client.send import MAX_BATCH_BYTES, events_endpoint, request_headers, response_detail
from auditflow.model.timeutil import format_utc
from auditflow.parsers.base import SourceContext
from auditflow.retry import Attempts, Backoff, pause
from auditflow.sources.agent_config import AgentConfig
from auditflow.sources.agent_metrics import AgentMetrics
from auditflow.sources.checkpoint import Checkpoint, CheckpointFile
from auditflow.sources.files import decode_line, local_host
from auditflow.sources.lines import LineConverter, ParserFactory, encode_event
from auditflow.sources.tail import FileTail, TailLine

log = logging.getLogger("auditflow.agent")

HOST_ENV = "AUDITFLOW_AGENT_HOST"  # the node name in a DaemonSet, where the pod's own name means little


@dataclass(slots=True)
class _Batch:
    body: list[bytes] = field(default_factory=list)  # encoded events
    size: int = 2  # bytes of the JSON array
    positions: dict[str, Checkpoint] = field(default_factory=dict)  # per path, after its last line here


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        token: str,
        create_parser: ParserFactory,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self.host = config.host or os.environ.get(HOST_ENV) or local_host()
        self.checkpoints = CheckpointFile(config.checkpoint_file)
        self.accepted: dict[str, Checkpoint] = self.checkpoints.load()
        self._queue: asyncio.Queue[TailLine] = asyncio.Queue(maxsize=config.buffer.max_lines)
        self._endpoint = events_endpoint(config.api.url)
        self._headers = request_headers(token, "auditflow-agent")
        self._client = client
        self._backoff = Backoff(initial=config.retry.initial, maximum=config.retry.max)
        self._last_accepted: float | None = None
        self._api_error: str | None = None
        self.tails = [
            FileTail(
                file.path,
                self.host,
                checkpoint=self.accepted.get(file.path),
                start_at_end=file.start_at == "end",
                rotate_wait=config.rotate_wait,
                max_line_bytes=config.buffer.max_line_bytes,
            )
            for file in config.files
        ]
        self.converters: dict[str, LineConverter] = {}
        for file in config.files:
            context = SourceContext(host=file.host or config.host, tz=ZoneInfo(file.tz))
            parser = create_parser(file.format, context)
            self.converters[file.path] = LineConverter(parser, context, forward_unparsed=file.forward_unparsed)
        for path, checkpoint in self.accepted.items():
            self.metrics.offset.labels(path).set(checkpoint.offset)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "api": "up" if self._api_error is None else "down",
            "api_error": self._api_error,
            "buffered_lines": self._queue.qsize(),
            "last_accepted": None
            if self._last_accepted is None
            else format_utc(datetime.fromtimestamp(self._last_accepted, UTC)),
            "files": {path: cp.offset for path, cp in sorted(self.accepted.items())},
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Follow and ship until `stop` is set; then ship what was read, if the API takes it."""
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:
                timeout = httpx.Timeout(self.config.api.timeout, connect=min(10.0, self.config.api.timeout))
                client = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout))
            followers = [asyncio.create_task(self._follow(tail, stop), name=f"tail:{tail.path}") for tail in self.tails]
            try:
                await self._ship(client, stop, followers)
            finally:
                for task in followers:
                    task.cancel()
                for task in followers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for tail in self.tails:
                    tail.close()

    async def _follow(self, tail: FileTail, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await tail.poll(self._queue.put)
            except OSError as exc:  # unreadable now (permissions, a vanished directory): try again later
                log.warning("cannot read %s: %s", tail.path, exc, extra={"path": tail.path})
            self.metrics.buffered.set(self._queue.qsize())
            await pause(stop, self.config.poll_interval)

    async def _ship(self, client: httpx.AsyncClient, stop: asyncio.Event, followers: list[asyncio.Task[None]]) -> None:
        while True:
            batch = await self._collect(stop, followers)
            if batch is None:
                return
            if batch.body and not await self._deliver(client, batch.body, stop):
                return  # stopping with the API down: not checkpointed, so read again next time
            self.accepted.update(batch.positions)
            await asyncio.to_thread(self.checkpoints.save, dict(self.accepted))
            for path, checkpoint in batch.positions.items():
                self.metrics.offset.labels(path).set(checkpoint.offset)

    async def _collect(self, stop: asyncio.Event, followers: list[asyncio.Task[None]]) -> _Batch | None:
        first = await self._first_line(stop, followers)
        if first is None:
            return None
        batch = _Batch()
        self._add(batch, first)
        deadline = time.monotonic() + (0 if stop.is_set() else self.config.batch.linger)
        # Half the request limit: one more line's events (64 KiB each at most) never tip it over.
        while len(batch.body) < self.config.batch.max_events and batch.size < MAX_BATCH_BYTES // 2:
            try:
                line = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    line = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            self._add(batch, line)
        self.metrics.buffered.set(self._queue.qsize())
        return batch

    async def _first_line(self, stop: asyncio.Event, followers: list[asyncio.Task[None]]) -> TailLine | None:
        while True:
            with contextlib.suppress(asyncio.QueueEmpty):
                return self._queue.get_nowait()
            if stop.is_set() and all(task.done() for task in followers):
                return None
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter.done():
                return getter.result()
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            await asyncio.sleep(0.01)  # let the followers notice the stop

    def _add(self, batch: _Batch, line: TailLine) -> None:
        converter = self.converters[line.path]
        events = converter.convert(decode_line(line.data), line.identity.key(line.offset))
        self.metrics.lines.labels(line.path).inc()
        self.metrics.events.labels(line.path).inc(len(events))
        if converter.last_unparsed is not None:
            self.metrics.unparsed.labels(line.path, converter.last_unparsed).inc()
        for event in events:
            encoded = encode_event(event)
            batch.body.append(encoded)
            batch.size += len(encoded) + 1
        batch.positions[line.path] = Checkpoint(line.identity, _resume_offset(converter, line))

    async def _deliver(self, client: httpx.AsyncClient, body: list[bytes], stop: asyncio.Event) -> bool:
        content = b"[" + b",".join(body) + b"]"
        attempts = Attempts(self._backoff, stop)
        while True:
            try:
                response = await client.post(self._endpoint, content=content, headers=self._headers)
                if response.status_code in (200, 201, 202):
                    self._accepted_now(len(body))
                    return True
                reason, detail = f"http_{response.status_code}", response_detail(response)
            except httpx.HTTPError as exc:
                reason, detail = type(exc).__name__, str(exc) or type(exc).__name__
            self.metrics.failures.labels(reason).inc()
            self.metrics.api_up.set(0)
            if self._api_error is None or attempts.attempt == 0:
                log.warning("the API did not take a batch (%s: %s); retrying with back-off", reason, detail)
            self._api_error = f"{reason}: {detail}"
            if stop.is_set():
                return False
            await attempts.pause()  # stopped meanwhile: one more try, then give up

    def _accepted_now(self, events: int) -> None:
        if self._api_error is not None:
            log.info("the API takes batches again")
        self._api_error = None
        self._last_accepted = time.time()
        self.metrics.api_up.set(1)
        self.metrics.sent.inc(events)
        self.metrics.batches.inc()
        self.metrics.last_accepted.set(self._last_accepted)


def _resume_offset(converter: LineConverter, line: TailLine) -> int:
    """Where reading resumes once this line's batch is accepted: after the line, unless the parser
    still holds an earlier line of this file (auditd assembling an event), which must then be read
    again after a restart. Its events keep their ids, so what was already sent is dropped downstream."""
    held = converter.parser.pending_key()
    if held is None:
        return line.end
    name, _, offset = held.rpartition("@")
    if name != line.identity.name or not offset.isdigit():
        return line.end  # held from before a rotation: that file is no longer read
    return min(line.end, int(offset))
