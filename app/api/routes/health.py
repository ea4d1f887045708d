"""Liveness and readiness. Always open (no API key), cheap, no model work."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RepositoryDep
from app.schemas import ErrorBody, HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthStatus, summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses={503: {"model": ErrorBody, "description": "Models are still loading"}},
    summary="The repository is loaded (per-model readiness: GET /v1/models/{name}/ready)",
)
async def ready(repository: RepositoryDep) -> dict[str, str]:
    repository.require_started()
    return {"status": "ready"}
