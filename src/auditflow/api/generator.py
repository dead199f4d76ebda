"""The synthetic event generator's rate and switch, applied without a restart."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from auditflow.api.deps import ActorDep, RuntimeDep
from auditflow.runtime import Runtime
from auditflow.services.generator import GeneratorService, GeneratorSettings

router = APIRouter(prefix="/api/v1/generator", tags=["generator"])


def _generator(runtime: Runtime) -> GeneratorService:
    if runtime.generator is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service runs no generator")
    return runtime.generator


@router.get("", response_model=GeneratorSettings, summary="The generator's current rate and switch")
async def get_generator(runtime: RuntimeDep, _actor: ActorDep) -> GeneratorSettings:
    return _generator(runtime).settings


@router.put("", response_model=GeneratorSettings, summary="Change the rate and/or switch, applied at once")
async def put_generator(body: GeneratorSettings, runtime: RuntimeDep, _actor: ActorDep) -> GeneratorSettings:
    return await _generator(runtime).update(events_per_second=body.events_per_second, enabled=body.enabled)
