"""The dead letters page: what the pipeline could not process, newest first, a page at a time.

Read-only: the dashboard's roles are viewer and analyst, and replaying or purging changes what
the whole pipeline processes, so those stay with the API and `auditflow dead-letters` (admin)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from auditflow.backends.store.dead_letters import decode_cursor
from auditflow.services.dashboard.context import get_dashboard, render

router = APIRouter()

PAGE_SIZE = 25
BODY_SHOWN = 4096  # characters of a body on the page; the API serves up to 64 KiB of it


@router.get("/dead-letters")
async def dead_letter_list(request: Request) -> Response:
    cursor = request.query_params.get("cursor") or None
    error = None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError:
            error, cursor = "That page link is not valid any more; showing the newest dead letters.", None
    page = await get_dashboard(request).source.dead_letters(PAGE_SIZE, cursor)
    letters = [
        {
            "letter": letter,
            "body": letter.body[:BODY_SHOWN],
            "cut": letter.body_truncated or len(letter.body) > BODY_SHOWN,
        }
        for letter in page.items
    ]
    return render(
        request,
        "dead_letters.html",
        title="Dead letters",
        active="dead-letters",
        page=page,
        letters=letters,
        error=error,
        next_url=f"?{urlencode({'cursor': page.next_cursor})}" if page.next_cursor else None,
        first_url="" if cursor else None,
    )
