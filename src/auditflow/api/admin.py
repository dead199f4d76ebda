"""Operations at runtime: change the log level without a restart."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from auditflow.api.deps import AdminCaller
from auditflow.config import LogLevel
from auditflow.logconfig import current_log_level, set_log_level

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
log = logging.getLogger("auditflow.admin")


class LogLevelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: LogLevel


@router.get("/log-level", response_model=LogLevelBody, summary="The current log level")
async def get_log_level(_caller: AdminCaller) -> LogLevelBody:
    return LogLevelBody(level=current_log_level())


@router.put("/log-level", response_model=LogLevelBody, summary="Change the log level now, without a restart")
async def put_log_level(body: LogLevelBody, caller: AdminCaller) -> LogLevelBody:
    set_log_level(body.level)
    log.warning("log level set to %s by %s", body.level, caller.actor)
    return body
