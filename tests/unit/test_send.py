"""`auditflow send`: format detection with line numbers, local validation before anything is sent,
batching, and the mapping of server answers to one-line errors, against a small in-test ingest app."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from auditflow.client import send as send_module
from auditflow.client.send import Record, SendError, read_events, send_events
from auditflow.codec import describe_errors
from auditflow.model.event import Event

TOKEN = "t0ken-for-the-tests-only"
EVENTS = TypeAdapter(list[Event])


class ASGIBridge(httpx.BaseTransport):
    """Lets the synchronous client under test call an ASGI app: each request runs on its own loop."""

    def __init__(self, app: FastAPI) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=request.read())
            response = await self._transport.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


def asgi_client(app: FastAPI) -> httpx.Client:
    return httpx.Client(transport=ASGIBridge(app))


class IngestApp:
    """The ingest contract in a few lines: bearer token, size limits, all-or-nothing validation."""

    def __init__(self, max_bytes: int = 10 * 1024 * 1024, refuse_user: str | None = None, status: int = 202) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.app = FastAPI()

        @self.app.post("/api/v1/events")
        async def ingest(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"detail": "missing or invalid bearer token"}, 401)
            body = await request.body()
            if len(body) > max_bytes:
                return JSONResponse({"detail": f"body exceeds {max_bytes} bytes"}, 413)
            if status != 202:
                return JSONResponse({"detail": "message broker unavailable"}, status)
            items = orjson.loads(body)
            try:
                EVENTS.validate_python(items)
            except ValidationError as exc:
                return JSONResponse({"detail": describe_errors(exc, prefix=("body",))}, 422)
            bad = [i for i, item in enumerate(items) if item.get("user_id") == refuse_user]
            if bad:  # a server stricter than the client: its own rules, same answer shape
                problem = {"loc": ["body", bad[0], "user_id"], "msg": "user is blocked", "type": "value_error"}
                return JSONResponse({"detail": [problem]}, 422)
            self.batches.append(items)
            return JSONResponse({"accepted": len(items), "event_ids": [None] * len(items)}, 202)

    def client(self) -> httpx.Client:
        return asgi_client(self.app)


def read(text: str | bytes, name: str = "events.jsonl") -> list[Record]:
    stream: Any = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    return list(read_events(stream, name))


def records(count: int, **fields: Any) -> list[Record]:
    return [(i + 1, {"event_type": "user_login", "user_id": f"u{i}", **fields}) for i in range(count)]


def send(app: IngestApp, recs: list[Record], **kwargs: Any) -> send_module.SendSummary:
    options: dict[str, Any] = {"name": "events.jsonl", "progress": False, "client": app.client()}
    return send_events("http://testserver", TOKEN, recs, **(options | kwargs))


# --- reading -------------------------------------------------------------------------------------


def test_reads_json_lines_with_their_line_numbers() -> None:
    text = '{"event_type": "a"}\n\n  \n{"event_type": "b"}\r\n{"event_type": "c"}'
    assert read(text) == [(1, {"event_type": "a"}), (4, {"event_type": "b"}), (5, {"event_type": "c"})]


def test_reads_a_pretty_printed_array_with_the_line_each_record_starts_on() -> None:
    text = '\n[\n  {"event_type": "a",\n   "details": {"x": [1, 2]}},\n  {"event_type": "b"}\n]\n'
    assert [line for line, _ in read(text.encode(), "a.json")] == [3, 5]


def test_reads_a_one_line_array_and_a_single_pretty_object() -> None:
    assert read('[{"event_type": "a"}, {"event_type": "b"}]') == [(1, {"event_type": "a"}), (1, {"event_type": "b"})]
    assert read('\n\n{\n  "event_type": "a"\n}\n') == [(3, {"event_type": "a"})]


def test_accepts_a_byte_order_mark_in_bytes_and_text() -> None:
    assert read('\ufeff{"event_type": "a"}'.encode()) == [(1, {"event_type": "a"})]
    assert read('\ufeff{"event_type": "a"}') == [(1, {"event_type": "a"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"event_type": "a"}\n{"event_type": "b"}\n{"event_type": \n', r"^events.jsonl:3: invalid JSON"),
        ('{"event_type": "a"}\n[1]\n', r"^events.jsonl:2: expected an event object, found an array"),
        ('[\n{"event_type": "a"},\n"x"\n]', r"^events.jsonl:3: expected an event object, found a string"),
        ('[\n{"event_type": "a"},\n{"event_type": }\n]', r"^events.jsonl:3: invalid JSON"),
        ('[\n{"event_type": "a"}\n{"event_type": "b"}]', r"^events.jsonl:3: invalid JSON: expected ',' or ']'"),
        ('[\n{"event_type": "a"},\n', r"^events.jsonl:3: invalid JSON: the array is not closed"),
        ('[{"event_type": "a"}] x', r"unexpected data after the closing"),
        ('[{"event_type": "a", "details": {"x": NaN}}]', r"^events.jsonl:1: invalid JSON: NaN"),
        ('{\n  "event_type": "a",\n  oops\n}', r"^events.jsonl:3: invalid JSON"),
        ("42", r"^events.jsonl:1: expected an event object, found a number"),
        ("  \n\n", r"no events \(the input is empty\)"),
        ("[ ]", r"no events \(an empty array\)"),
        (b'{"event_type": "a"}\n{"user_id": "\xff"}', r"^events.jsonl:2: not UTF-8 text"),
    ],
)
def test_malformed_input_names_the_line(text: str | bytes, message: str) -> None:
    with pytest.raises(SendError, match=message):
        read(text)


# --- validating before sending -------------------------------------------------------------------


def test_a_bad_record_is_reported_with_its_line_and_nothing_is_sent() -> None:
    app = IngestApp()
    recs = records(20)
    recs[16] = (17, {"event_type": "User Login"})
    with pytest.raises(SendError) as caught:
        send(app, recs, batch_size=5)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("events.jsonl:17: event_type: String should match pattern")
    assert lines[-1] == "1 of 20 records are invalid; nothing was sent"
    assert app.batches == []


def test_every_invalid_record_is_counted_and_the_list_is_capped() -> None:
    recs = records(30, severity="LOUD")
    recs[0] = (1, {"event_type": "x", "colour": "red"})
    with pytest.raises(SendError) as caught:
        send(IngestApp(), recs)
    lines = str(caught.value).splitlines()
    assert lines[0] == "events.jsonl:1: colour: unknown field 'colour': put custom data under 'details'"
    assert lines[1].startswith("events.jsonl:2: severity: Input should be")
    assert lines[-2] == "... and 20 more problems"
    assert lines[-1] == "30 of 30 records are invalid; nothing was sent"


def test_records_sharing_a_line_are_told_apart_by_position() -> None:
    recs = read('[{"event_type": "a"}, {"event_type": "B"}]', "one.json")
    with pytest.raises(SendError, match=r"^one.json:1 \(record 2\): event_type: "):
        send(IngestApp(), recs, name="one.json")


# --- sending -------------------------------------------------------------------------------------


def test_sends_in_batches_with_the_token_and_returns_a_summary() -> None:
    app = IngestApp()
    summary = send(app, records(2500), batch_size=1000)
    assert [len(batch) for batch in app.batches] == [1000, 1000, 500]
    assert [item["user_id"] for batch in app.batches for item in batch] == [f"u{i}" for i in range(2500)]
    assert (summary.accepted, summary.batches) == (2500, 3)
    assert summary.seconds >= 0


def test_batches_also_stay_under_the_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_module, "MAX_BATCH_BYTES", 1000)
    app = IngestApp(max_bytes=1000)
    summary = send(app, records(100, details={"pad": "x" * 50}), batch_size=10_000)
    assert summary.accepted == 100
    assert summary.batches == len(app.batches) > 1
    assert max(len(orjson.dumps(batch)) for batch in app.batches) <= 1000


def test_a_refused_token_is_one_clear_line() -> None:
    app = IngestApp()
    with pytest.raises(SendError) as caught:
        send_events("http://testserver", "wrong-token-xxxxxxxx", records(3), client=app.client(), name="e.jsonl")
    assert str(caught.value) == (
        "batch 1/1 (e.jsonl:1): 401 Unauthorized: the server refused the token (check --token / AUDITFLOW_TOKEN)"
    )
    assert "wrong-token" not in str(caught.value)


def test_too_large_suggests_a_smaller_batch() -> None:
    with pytest.raises(SendError, match=r"^batch 1/1 \(events.jsonl:1\): 413 too large \(body exceeds 100 bytes\); "):
        send(IngestApp(max_bytes=100), records(10))


def test_a_server_side_422_names_the_line_of_the_record_and_what_was_delivered() -> None:
    app = IngestApp(refuse_user="u13")
    with pytest.raises(SendError) as caught:
        send(app, records(30), batch_size=10)
    assert str(caught.value) == (
        "batch 2/3 (events.jsonl:11), after 10 events were accepted: refused by the server, nothing of it "
        "accepted: events.jsonl:14: user_id: user is blocked"
    )
    assert len(app.batches) == 1


def test_unavailable_server_and_unexpected_answers() -> None:
    with pytest.raises(SendError, match=r"cannot take events right now \(503: message broker unavailable\)"):
        send(IngestApp(status=503), records(1))
    with pytest.raises(SendError, match=r"unexpected answer 404 Not Found from the server: Not Found"):
        send_events("http://testserver/elsewhere/", TOKEN, records(1), client=asgi_client(FastAPI()), progress=False)


def test_connection_refused_is_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SendError, match=rf"^batch 1/1 \(<stdin>:1\): cannot connect to http://127.0.0.1:{port}: "):
        send_events(f"http://127.0.0.1:{port}", TOKEN, records(1), progress=False)


def test_transport_errors_are_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(SendError, match=r"no answer from http://x within 30 s"):
        send_events("http://x", TOKEN, records(1), client=client, progress=False)


def test_accepts_the_full_endpoint_url_and_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(202, json={"accepted": len(orjson.loads(request.content)), "event_ids": []})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    summary = send_events("http://x/api/v1/events/", TOKEN, records(5), batch_size=2, progress=True, client=client)
    assert seen == ["http://x/api/v1/events"] * 3
    assert summary.accepted == 5
    assert "5/5" in capsys.readouterr().err


def test_batch_size_is_bounded() -> None:
    with pytest.raises(SendError, match="batch size"):
        send(IngestApp(), records(1), batch_size=10_001)
