"""Dead letters: list them (newest first, paged), replay them to the queue they came from, or purge
them. Listing needs the `read` scope; replay and purge change what the pipeline processes and need
`admin`. They are read from the alert store, where the dead-letter worker moves them (see
`services/dead_letters.py` and docs/operations/dead-letters.md)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status

from auditflow.api.deps import AdminCaller, ReadCaller, RuntimeDep, StoreDep
from auditflow.model.dead_letter import DeadLetterPage, DeadLetterResult, DeadLetterSelection
from auditflow.services import dead_letters

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead-letters"])


def _selection(body: DeadLetterSelection) -> list[UUID] | None:
    if body.ids is not None:
        return list(body.ids)
    if body.all:
        return None
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body"], "msg": "name the dead letters in 'ids' or set 'all': true", "type": "value_error"}],
    )


@router.get("", response_model=DeadLetterPage, summary="List dead letters, newest first, with a keyset cursor")
async def list_dead_letters(
    store: StoreDep,
    _caller: ReadCaller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> DeadLetterPage:
    try:
        page = await store.list_dead_letters(limit, cursor)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
        ) from None
    return page


@router.post(
    "/replay",
    response_model=DeadLetterResult,
    summary="Publish dead letters again to their original queue; each is removed once the broker confirmed it",
    responses={503: {"description": "The broker is unavailable; nothing unconfirmed was removed"}},
)
async def replay_dead_letters(
    body: DeadLetterSelection, runtime: RuntimeDep, store: StoreDep, caller: AdminCaller
) -> DeadLetterResult:
    ids = _selection(body)
    if runtime.broker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service has no broker to replay to")
    s = runtime.settings
    queues = {s.events_queue, s.alerts_queue}
    dead_letters.log.warning(
        "replay of %s dead letters requested by %s", "all" if ids is None else len(ids), caller.actor
    )
    return await dead_letters.replay(store, runtime.broker, ids, queues=queues)


@router.post("/purge", response_model=DeadLetterResult, summary="Delete dead letters for good")
async def purge_dead_letters(body: DeadLetterSelection, store: StoreDep, caller: AdminCaller) -> DeadLetterResult:
    ids = _selection(body)
    dead_letters.log.warning(
        "purge of %s dead letters requested by %s", "all" if ids is None else len(ids), caller.actor
    )
    return await dead_letters.purge(store, ids)
