"""The Channels page: every notification channel with its health from the outbox, for every signed-in
user, and a "Send test" form for analysts (CSRF-protected, one test per channel every few seconds,
logged with the analyst's name like the API logs its caller)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from starlette.responses import Response

from auditflow.errors import AuditFlowError, NotFound
from auditflow.notify.testsend import ChannelTestResult, ChannelTestThrottled
from auditflow.services.dashboard.context import current_session, get_dashboard, render
from auditflow.services.dashboard.csrf import CSRF_FIELD, check_csrf

router = APIRouter()


async def _page(
    request: Request,
    *,
    status_code: int = 200,
    tested: str | None = None,
    result: ChannelTestResult | None = None,
    problem: str | None = None,
) -> Response:
    listed = await get_dashboard(request).source.channels()
    return render(
        request,
        "channels.html",
        status_code=status_code,
        title="Channels",
        active="channels",
        listed=listed,
        tested=tested,
        result=result,
        problem=problem,
    )


@router.get("/channels")
async def channel_list(request: Request) -> Response:
    return await _page(request)


@router.post("/channels/{name}/test")
async def send_channel_test(
    request: Request, name: str, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = ""
) -> Response:
    session = current_session(request)
    check_csrf(session.csrf, csrf_token)
    if not session.can_triage:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "Your role is viewer: only analysts can send test notifications."
        )
    source = get_dashboard(request).source
    try:
        result = await source.test_channel(name, session.user)
    except ChannelTestThrottled as exc:
        response = await _page(
            request,
            status_code=429,
            tested=name,
            problem=f"This channel was tested moments ago. Try again in {exc.retry_after} s.",
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except NotFound:
        return await _page(request, status_code=404, tested=name, problem="There is no channel of that name.")
    except AuditFlowError as exc:  # e.g. the notification API refused the dashboard's token
        return await _page(request, status_code=502, tested=name, problem=f"The test could not be sent: {exc}")
    return await _page(request, tested=name, result=result)
