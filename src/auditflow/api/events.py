"""Event ingestion: one event or an array, validated all-or-nothing (including the event-time
bounds), then published in batches."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json

from auditflow.api.deps import IngestCaller, IngestorDep
from auditflow.codec import describe_errors
from auditflow.model.event import Event
from auditflow.model.fastpath import fast_event_ids, fast_events, fast_wire_events
from auditflow.model.limits import BACKFILL_HEADER, TIME_BOUNDS_CONTEXT

router = APIRouter(prefix="/api/v1/events", tags=["events"])

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_EVENTS = 10_000
_EVENTS = TypeAdapter(list[Event])
COMPONENTS = "#/components/schemas/"
EVENT_COMPONENT = "Event"


def add_event_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Put the event schema (and the schemas it refers to) into the document's components: the
    request body is read by hand, so FastAPI does not know that the route refers to it."""
    schema = Event.model_json_schema(ref_template=COMPONENTS + "{model}")
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(EVENT_COMPONENT, schema)
    return spec


class Accepted(BaseModel):
    accepted: int
    event_ids: list[UUID]


class ValidationProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationReport(BaseModel):
    detail: list[ValidationProblem]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _unprocessable(problems: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": problems}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Submit one event or an array of up to 10,000 events (10 MiB)",
    responses={
        413: {"description": "Body over 10 MiB or more than 10,000 events"},
        422: {"model": ValidationReport, "description": "Nothing accepted; each bad index and field is named"},
        503: {"description": "The broker cannot take events right now; retry later"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": f"{COMPONENTS}{EVENT_COMPONENT}"},
                            {"type": "array", "items": {"$ref": f"{COMPONENTS}{EVENT_COMPONENT}"}},
                        ]
                    }
                }
            },
        }
    },
)
async def submit_events(
    request: Request,
    _caller: IngestCaller,
    ingestor: IngestorDep,
    backfill: Annotated[
        bool,
        Header(
            alias=BACKFILL_HEADER,
            description="`true`: the events are old on purpose (a log backfill); the maximum age does not apply",
        ),
    ] = False,
) -> Response:
    body = await _read_body(request)
    bounds = ingestor.time_bounds.without_age_limit() if backfill else ingestor.time_bounds
    context = {TIME_BOUNDS_CONTEXT: bounds}
    if not ingestor.in_process:
        # The events only pass through this process. A body whose events all carry their id and
        # time is checked and, when it fits one message, published as it was sent: nothing is
        # filled in, and analysis decodes it with the same checks into the same events. Other
        # usual bodies are checked straight into the wire form, without building the events (the
        # same checks; the model's path otherwise).
        # Not every event can have both without both names in the body, and one with more events than a
        # message holds has more ids than that: counted first, such a body is not checked twice.
        ids_named = body.count(b'"event_id"')
        if 0 < ids_named <= ingestor.batch_size and b'"timestamp"' in body:
            ids = fast_event_ids(body, bounds)
            if ids is not None and len(ids) <= ingestor.batch_size:
                await ingestor.submit_body(body, len(ids), source="api", refuse_when_full=True)
                return _accepted(ids)
        rows = fast_wire_events(body, bounds)
        if rows is not None:
            _check_count(len(rows))
            await ingestor.submit_wire(rows, source="api", refuse_when_full=True)
            return _accepted([row["event_id"] for row in rows])
        found = _validate_with_model(body, context)
    else:
        found = validate_event_body(body, context)
    events = found if found is not None else _validate_slowly(body, context)
    if isinstance(events, JSONResponse):
        return events
    _check_count(len(events))
    await ingestor.submit(events, source="api", refuse_when_full=True)
    return _accepted([event.event_id for event in events])


def _check_count(count: int) -> None:
    if count > MAX_EVENTS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"more than {MAX_EVENTS} events in one request")


def _accepted(event_ids: list[UUID] | list[str]) -> Response:
    # The `Accepted` shape, serialised by orjson (UUIDs natively, and ids already in their text
    # form alike) rather than through the model.
    accepted = orjson.dumps({"accepted": len(event_ids), "event_ids": event_ids})
    return Response(accepted, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


def validate_event_body(body: bytes, context: dict[str, Any]) -> list[Event] | None:
    """The events of a body without problems, or None: the usual request takes the hand-written
    checks (`model.fastpath`), then the validator's JSON parser in one pass."""
    events = fast_events(body, context[TIME_BOUNDS_CONTEXT])
    if events is not None:
        return events
    return _validate_with_model(body, context)


def _validate_with_model(body: bytes, context: dict[str, Any]) -> list[Event] | None:
    try:
        return _EVENTS.validate_json(body, context=context)
    except ValidationError:
        return None


def _validate_slowly(body: bytes, context: dict[str, Any]) -> list[Event] | JSONResponse:
    """A single object, or a body with problems: parse first so that every problem is named."""
    try:
        # The validator's own parser: integers of any size stay integers (and are refused by name
        # if too large) rather than turning into floats, and NaN is not JSON.
        parsed = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return _unprocessable([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}])
    single = isinstance(parsed, dict)
    items = [parsed] if single else parsed
    if not isinstance(items, list):
        return _unprocessable([{"loc": ["body"], "msg": "expected an event object or an array", "type": "type"}])
    if len(items) > MAX_EVENTS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"more than {MAX_EVENTS} events in one request")
    try:
        events = _EVENTS.validate_python(items, context=context)
    except ValidationError as exc:
        problems = describe_errors(exc, prefix=("body",))
        if single:  # `["body", 0, field]` -> `["body", field]` for a lone object
            for problem in problems:
                del problem["loc"][1]
        return _unprocessable(problems)
    return events
