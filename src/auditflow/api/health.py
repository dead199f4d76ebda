"""Probes and metrics: the only endpoints that need no token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, generate_latest
from pydantic import BaseModel

from auditflow.api.deps import RuntimeDep
from auditflow.model.status import Readiness

router = APIRouter(tags=["health"])

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Liveness(BaseModel):
    status: str


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process is running")
async def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every dependency with its status (503 when a critical one is down)",
    responses={503: {"model": Readiness, "description": "A critical dependency is down"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    readiness = await runtime.readiness()
    code = 503 if readiness.status == "not_ready" else 200
    return JSONResponse(readiness.model_dump(mode="json"), status_code=code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=None, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})
