"""The synthetic event generator's rate and switch, applied without a restart."""

from __future__ import annotations

from fastapi import APIRouter

from auditflow.api.deps import AdminCaller, GeneratorDep, ReadCaller
from auditflow.services.generator import GeneratorSettings

router = APIRouter(prefix="/api/v1/generator", tags=["generator"])


@router.get("", response_model=GeneratorSettings, summary="The generator's current rate and switch")
async def get_generator(_caller: ReadCaller, generator: GeneratorDep) -> GeneratorSettings:
    return generator.settings


@router.put("", response_model=GeneratorSettings, summary="Change the rate and/or switch, applied at once")
async def put_generator(body: GeneratorSettings, _caller: AdminCaller, generator: GeneratorDep) -> GeneratorSettings:
    return await generator.update(events_per_second=body.events_per_second, enabled=body.enabled)
