"""`auditflow send`: read events from a JSON array, one JSON object or JSON Lines, validate every record
locally against the event contract, then post them in batches to `POST /api/v1/events`."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import httpx
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from auditflow import __version__
from auditflow.codec import describe_errors
from auditflow.errors import AuditFlowError
from auditflow.model.event import Event
from auditflow.model.limits import BACKFILL_HEADER

Record = tuple[int, dict[str, Any]]  # (line number, JSON object)

MAX_BATCH_EVENTS = 10_000
# The server refuses bodies over 10 MiB; stay a little below so that a batch never trips it.
MAX_BATCH_BYTES = 10 * 1024 * 1024 - 64 * 1024
MAX_REPORTED_PROBLEMS = 10
_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class SendError(AuditFlowError):
    """A send run failed; the message is ready to print (one line per problem)."""


def read_events(stream: IO[bytes] | IO[str], name: str) -> Iterator[Record]:
    """Yield `(line, object)` for each record of a JSON array, a single JSON object or JSON Lines.

    The format is detected: `[` opens an array; a first line that is a complete JSON object means
    JSON Lines (blank lines allowed); anything else is parsed as one (pretty-printed) object.
    Raises SendError naming the line of malformed JSON or of a record that is not an object.
    """
    text = _decode(stream.read(), name)
    start = _skip_space(text, 0)
    if start == len(text):
        raise SendError(f"{name}: no events (the input is empty)")
    if text[start] == "[":
        records = _read_array(text, start, name)
    elif text[start] == "{" and _is_json(text[start:].split("\n", 1)[0]):
        records = _read_lines(text, name)
    else:
        line = text.count("\n", 0, start) + 1
        records = iter([(line, _object(_parse(text, name, 1), name, line))])
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise SendError(f"{name}: no events (an empty array)")


def _decode(raw: bytes | str, name: str) -> str:
    if isinstance(raw, str):
        return raw.removeprefix("\ufeff")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SendError(f"{name}:{line}: not UTF-8 text") from None


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _parse(text: str, name: str, first_line: int) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SendError(f"{name}:{first_line + exc.lineno - 1}: invalid JSON: {exc.msg}") from None


def _object(value: Any, name: str, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        found = _JSON_TYPES.get(type(value), "a value")
        raise SendError(f"{name}:{line}: expected an event object, found {found}")
    return value


def _read_lines(text: str, name: str) -> Iterator[Record]:
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, _object(_parse(line, name, number), name, number)


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _read_array(text: str, start: int, name: str) -> Iterator[Record]:
    # Decoded element by element (the C scanner of `json`) to know the line each record starts on.
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    end, counted, line = len(text), start, text.count("\n", 0, start) + 1
    pos = _skip_space(text, start + 1)
    while pos < end and text[pos] != "]":
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SendError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise SendError(f"{name}:{line}: invalid JSON: {exc}") from None
        yield line, _object(value, name, line)
        pos = _skip_space(text, pos)
        if pos < end and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        elif pos < end and text[pos] != "]":
            line += text.count("\n", counted, pos)
            raise SendError(f"{name}:{line}: invalid JSON: expected ',' or ']' after a record")
    if pos >= end:
        raise SendError(f"{name}:{line + text.count(chr(10), counted, end)}: invalid JSON: the array is not closed")
    if _skip_space(text, pos + 1) != end:
        raise SendError(f"{name}: invalid JSON: unexpected data after the closing ']'")


@dataclass(frozen=True, slots=True)
class SendSummary:
    accepted: int
    batches: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Batch:
    number: int  # 1-based
    first: int  # index of its first record
    count: int
    body: bytes


def send_events(
    url: str,
    token: str,
    records: Sequence[Record],
    *,
    batch_size: int = 1000,
    progress: bool | None = None,
    name: str = "<stdin>",
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    encoded: Sequence[bytes] | None = None,
    backfill: bool = False,
) -> SendSummary:
    """Validate all `records`, then post them in batches of at most `batch_size` events (and 10 MiB).

    All or nothing, as far as the client can promise it: every record is checked against the event
    contract before the first request, so a single bad record (reported as `NAME:LINE: field: message`)
    means nothing at all is sent. The server then accepts or refuses each batch as a whole. If a later
    batch still fails (server stopped, token revoked), the error names that batch, its first line and
    how many events the earlier batches delivered, so the rest can be sent from that line on; sending
    the whole input again would deliver the accepted events twice.

    `progress`: None shows a bar on stderr when it is a terminal and there is more than one batch.
    `client` lets callers (and tests) supply their own `httpx.Client`. `encoded`: the records as JSON,
    one each, already validated (events a parser built); the local check is then skipped and only the
    line numbers of `records` are used. Raises SendError.
    """
    if not 1 <= batch_size <= MAX_BATCH_EVENTS:
        raise SendError(f"batch size must be between 1 and {MAX_BATCH_EVENTS}")
    if encoded is None:
        encoded = _validate(records, name)
    elif len(encoded) != len(records):
        raise ValueError("one encoded body per record")
    batches = list(_batches(encoded, batch_size))
    endpoint = events_endpoint(url)
    headers = request_headers(token, "auditflow-send")
    if backfill:  # old events on purpose: the instance's maximum event age does not apply
        headers[BACKFILL_HEADER] = "true"
    show = progress if progress is not None else (len(batches) > 1 and sys.stderr.isatty())
    accepted, started = 0, time.perf_counter()
    with ExitStack() as stack:
        http = client or stack.enter_context(httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))))
        columns = (*Progress.get_default_columns(), MofNCompleteColumn())
        bar = stack.enter_context(Progress(*columns, console=Console(stderr=True))) if show else None
        task = bar.add_task("sending", total=len(records)) if bar else None
        for batch in batches:
            where = f"batch {batch.number}/{len(batches)} ({_where(name, records, batch.first)})"
            if accepted:
                where += f", after {accepted} events were accepted"
            try:
                response = http.post(endpoint, content=batch.body, headers=headers)
            except httpx.ConnectError as exc:
                raise SendError(f"{where}: cannot connect to {url}: {str(exc) or type(exc).__name__}") from None
            except httpx.TimeoutException:
                raise SendError(f"{where}: no answer from {url} within {timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise SendError(f"{where}: request to {url} failed: {str(exc) or type(exc).__name__}") from None
            accepted += _accepted(response, batch, where, name, records)
            if bar is not None and task is not None:
                bar.advance(task, batch.count)
    return SendSummary(accepted=accepted, batches=len(batches), seconds=time.perf_counter() - started)


def _validate(records: Sequence[Record], name: str) -> list[bytes]:
    problems: list[str] = []
    invalid = 0
    encoded: list[bytes] = []
    for index, (_, obj) in enumerate(records):
        try:
            Event.model_validate(obj)
            encoded.append(orjson.dumps(obj))
        except ValidationError as exc:
            invalid += 1
            where = _where(name, records, index)
            problems.extend(f"{where}: {_loc(p['loc'])}: {p['msg']}" for p in describe_errors(exc))
        except orjson.JSONEncodeError as exc:
            invalid += 1
            problems.append(f"{_where(name, records, index)}: cannot be encoded as JSON: {exc}")
    if not problems:
        return encoded
    lines = problems[:MAX_REPORTED_PROBLEMS]
    if len(problems) > len(lines):
        lines.append(f"... and {len(problems) - len(lines)} more problems")
    lines.append(f"{invalid} of {len(records)} records are invalid; nothing was sent")
    raise SendError("\n".join(lines))


def _batches(encoded: Sequence[bytes], batch_size: int) -> Iterator[_Batch]:
    first, size, number = 0, 2, 1
    for index, part in enumerate(encoded):
        count = index - first
        if count and (count == batch_size or size + len(part) + 1 > MAX_BATCH_BYTES):
            yield _Batch(number, first, count, b"[" + b",".join(encoded[first:index]) + b"]")
            first, size, number = index, 2, number + 1
        size += len(part) + 1
    if first < len(encoded):
        yield _Batch(number, first, len(encoded) - first, b"[" + b",".join(encoded[first:]) + b"]")


def _accepted(response: httpx.Response, batch: _Batch, where: str, name: str, records: Sequence[Record]) -> int:
    status = response.status_code
    if status in (200, 201, 202):
        try:
            return int(response.json()["accepted"])
        except (ValueError, KeyError, TypeError):
            return batch.count
    detail = response_detail(response)
    if status == 401:
        raise SendError(f"{where}: 401 Unauthorized: the server refused the token (check --token / AUDITFLOW_TOKEN)")
    if status == 413:
        raise SendError(f"{where}: 413 too large ({detail}); try a smaller --batch-size")
    if status == 422:
        problem = _server_problems(response, batch, name, records)
        raise SendError(f"{where}: refused by the server, nothing of it accepted: {problem}")
    if status == 503:
        raise SendError(f"{where}: the server cannot take events right now (503: {detail}); retry later")
    raise SendError(f"{where}: unexpected answer {status} {response.reason_phrase} from the server: {detail}")


def _server_problems(response: httpx.Response, batch: _Batch, name: str, records: Sequence[Record]) -> str:
    try:
        problems = response.json()["detail"]
        first = problems[0]
        loc = list(first["loc"])
    except (ValueError, KeyError, TypeError, IndexError):
        return response_detail(response)
    if loc[:1] == ["body"]:
        loc = loc[1:]
    where = name
    if loc and isinstance(loc[0], int) and 0 <= loc[0] < batch.count:
        where = _where(name, records, batch.first + loc[0])
        loc = loc[1:]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where}: {_loc(loc) or 'body'}: {first.get('msg', '?')}{more}"


def response_detail(response: httpx.Response) -> str:
    """A short, one-line reason from an error answer."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else response.text
    return " ".join(text.split())[:200] or response.reason_phrase


def _where(name: str, records: Sequence[Record], index: int) -> str:
    line = records[index][0]
    # Records of a one-line JSON array share a line: add the record's position to tell them apart.
    neighbours = (records[i][0] for i in (index - 1, index + 1) if 0 <= i < len(records))
    if line in neighbours:
        return f"{name}:{line} (record {index + 1})"
    return f"{name}:{line}"


def _loc(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def request_headers(token: str, agent: str) -> dict[str, str]:
    """Headers of a batch request (shared with the log agent)."""
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "User-Agent": f"{agent}/{__version__}",
    }


def events_endpoint(url: str) -> str:
    """The batch endpoint of an instance given its base URL (or the endpoint itself)."""
    base = url.rstrip("/")
    return base if base.endswith("/api/v1/events") else f"{base}/api/v1/events"
