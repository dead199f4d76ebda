"""Where `auditflow ingest` delivers events: a running instance through the batch API (the HTTP
client of `auditflow send`), or a fresh embedded pipeline in this process whose alerts are listed
at the end."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from auditflow.client.send import Record, SendError, send_events
from auditflow.config import load_settings
from auditflow.errors import AuditFlowError
from auditflow.model.alert import AlertQuery, AlertSummary
from auditflow.model.event import Event
from auditflow.runtime import Runtime
from auditflow.sources.ingest import IngestError
from auditflow.sources.lines import encode_event

READY_TIMEOUT = 30.0


class HttpSink:
    """Posts each chunk with `send_events` over one connection; an error names the file and line."""

    def __init__(self, url: str, token: str, *, batch_size: int, timeout: float = 30.0) -> None:
        self.url = url
        self.token = token
        self.batch_size = batch_size
        self.timeout = timeout
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def send(self, events: Sequence[Event], lines: Sequence[int], name: str) -> None:
        # The events were validated when the parser built them: only their line numbers are needed.
        records: list[Record] = [(line, {}) for line in lines]
        try:
            send_events(
                self.url,
                self.token,
                records,
                encoded=[encode_event(event) for event in events],
                batch_size=self.batch_size,
                progress=False,
                name=name,
                timeout=self.timeout,
                client=self._client,
                backfill=True,  # a file is read after the fact: its events may be of any age
            )
        except SendError as exc:
            raise IngestError(str(exc)) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddedSink:
    """A whole pipeline in this process (memory broker and state, SQLite in `data_dir` or a temporary
    directory); `alerts()` waits until every submitted event has been analysed and stored."""

    def __init__(self, data_dir: Path | None = None, *, rules_path: Path | None = None) -> None:
        self._stack = contextlib.ExitStack()
        root = data_dir or Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="auditflow-ingest-")))
        root.mkdir(parents=True, exist_ok=True)
        overrides: dict[str, Any] = {
            "data_dir": root,
            "broker_url": "memory://",
            "state_url": "memory://",
            "database_url": f"sqlite:///{root / 'auditflow.sqlite3'}",
            "generator_rate": 0,
        }
        if rules_path is not None:
            overrides["rules_path"] = rules_path
        self.data_dir = root
        self._runner = self._stack.enter_context(asyncio.Runner())
        self.runtime = Runtime(load_settings(**overrides), "run")
        try:
            self._runner.run(self._start())
        except BaseException:
            self._stack.close()
            raise

    async def _start(self) -> None:
        await self.runtime.start()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.runtime.wait_ready()
        except TimeoutError:
            raise IngestError("the embedded pipeline did not start within 30 s") from None

    def send(self, events: Sequence[Event], lines: Sequence[int], name: str) -> None:
        assert self.runtime.ingestor is not None
        try:
            self._runner.run(self.runtime.ingestor.submit(events, source="ingest"))
        except AuditFlowError as exc:
            raise IngestError(f"{name}: the embedded pipeline refused events: {exc}") from None

    def alerts(self) -> list[AlertSummary]:
        return self._runner.run(self._alerts())

    async def _alerts(self) -> list[AlertSummary]:
        await self.runtime.settle()
        assert self.runtime.store is not None
        found: list[AlertSummary] = []
        cursor: str | None = None
        while True:
            page = await self.runtime.store.list_alerts(AlertQuery(limit=500, cursor=cursor))
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return sorted(found, key=lambda a: (a.first_seen, a.rule_id))

    def close(self) -> None:
        try:
            self._runner.run(self.runtime.aclose())
        finally:
            self._stack.close()

    def __enter__(self) -> EmbeddedSink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
