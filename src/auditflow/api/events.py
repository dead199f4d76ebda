"""Event ingestion: one event or an array, validated all-or-nothing, then published in batches."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from auditflow.api.deps import IngestCaller, IngestorDep
from auditflow.codec import describe_errors
from auditflow.model.event import Event

router = APIRouter(prefix="/api/v1/events", tags=["events"])

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_EVENTS = 10_000
_EVENTS = TypeAdapter(list[Event])


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
                            {"$ref": "#/components/schemas/AuditEvent"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}},
                        ]
                    }
                }
            },
        }
    },
)
async def submit_events(request: Request, _caller: IngestCaller, ingestor: IngestorDep) -> Response:
    body = await _read_body(request)
    try:
        # An array of valid events, the usual request, in one pass of the validator's JSON parser.
        events = _EVENTS.validate_json(body)
    except ValidationError:
        events = None
    if events is None:
        result = _validate_slowly(body)
        if isinstance(result, JSONResponse):
            return result
        events = result
    if len(events) > MAX_EVENTS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"more than {MAX_EVENTS} events in one request")
    await ingestor.submit(events, source="api", refuse_when_full=True)
    # The `Accepted` shape, serialised by orjson (UUIDs natively) rather than through the model.
    accepted = orjson.dumps({"accepted": len(events), "event_ids": [event.event_id for event in events]})
    return Response(accepted, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


def _validate_slowly(body: bytes) -> list[Event] | JSONResponse:
    """A single object, or a body with problems: parse first so that every problem is named."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _unprocessable([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}])
    single = isinstance(parsed, dict)
    items = [parsed] if single else parsed
    if not isinstance(items, list):
        return _unprocessable([{"loc": ["body"], "msg": "expected an event object or an array", "type": "type"}])
    if len(items) > MAX_EVENTS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"more than {MAX_EVENTS} events in one request")
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        problems = describe_errors(exc, prefix=("body",))
        if single:  # `["body", 0, field]` -> `["body", field]` for a lone object
            for problem in problems:
                del problem["loc"][1]
        return _unprocessable(problems)
    return events
