"""Notification channels: each channel of the active routing file with its health from the outbox
(`read`), and a test send through one channel (`admin`: it reaches a real receiver)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.routing import APIRouter

from auditflow.api.deps import AdminCaller, ReadCaller, RuntimeDep
from auditflow.notify.health import ChannelDesk, ChannelList, ChannelView
from auditflow.notify.testsend import TEST_INTERVAL_S, ChannelTestResult, ChannelTestThrottled

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


def get_channels(runtime: RuntimeDep) -> ChannelDesk:
    if runtime.channels is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service does not serve notification channels")
    return runtime.channels


ChannelsDep = Annotated[ChannelDesk, Depends(get_channels)]


@router.get(
    "",
    response_model=ChannelList,
    summary="Every channel of the routing file with its routes and health; empty when notifications are off",
)
async def list_channels(channels: ChannelsDep, _caller: ReadCaller) -> ChannelList:
    return await channels.list()


@router.get(
    "/{name}",
    response_model=ChannelView,
    summary="One channel with its routes and health",
    responses={404: {"description": "No channel of that name (or notifications are off)"}},
)
async def get_channel(name: str, channels: ChannelsDep, _caller: ReadCaller) -> ChannelView:
    return await channels.get(name)


@router.post(
    "/{name}/test",
    response_model=ChannelTestResult,
    summary="Send a test notification through the channel now (not through the outbox) and report the answer",
    description=(
        "Sends a clearly fake alert (`event` `test`, rule `auditflow-test`) through the channel's sender with "
        "the channel's timeout. A send the receiver refused is still a 200: `ok` is false and `error` says why. "
        f"At most one test per channel every {TEST_INTERVAL_S:g} seconds (429 with Retry-After). The caller is "
        "logged."
    ),
    responses={
        404: {"description": "No channel of that name (or notifications are off)"},
        429: {"description": "The channel was tested moments ago; Retry-After says when to try again"},
    },
)
async def send_channel_test(name: str, channels: ChannelsDep, caller: AdminCaller) -> ChannelTestResult:
    try:
        return await channels.test(name, caller.actor)
    except ChannelTestThrottled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc), headers={"Retry-After": str(exc.retry_after)}
        ) from None
