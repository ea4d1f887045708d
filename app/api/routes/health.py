"""Liveness and readiness. Always open (no API key), cheap, no model work."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.schemas import ErrorBody, HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthStatus, summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses={
        503: {"model": ErrorBody, "description": "Models still loading, or one that should serve is not"}
    },
    summary="Models loaded, every one that should serve is serving (per model: /v1/models/{name}/ready)",
)
async def ready(service: ServiceDep) -> dict[str, str]:
    service.check_ready()
    return {"status": "ready"}
