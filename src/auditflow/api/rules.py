"""The active rules and the outcome of the last reload."""

from __future__ import annotations

from fastapi import APIRouter

from auditflow.api.deps import ReadCaller, RulesDep
from auditflow.model.status import RulesStatus

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


@router.get("", response_model=RulesStatus, summary="Loaded rules and the last reload error, if any")
async def list_rules(_caller: ReadCaller, rules: RulesDep) -> RulesStatus:
    return rules.status()
