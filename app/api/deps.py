"""Annotated dependency aliases: what a route needs, taken from ``app.state`` (set by ``create_app``).

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which costs
a thread hand-off per dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import Unauthorized
from app.metrics import Metrics
from app.repository import ModelRepository
from app.service import InferenceService


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_repository(request: Request) -> ModelRepository:
    return request.app.state.repository


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def require_api_key(request: Request) -> None:
    """With ``FUSION_API_KEY`` set, require ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Raises:
        Unauthorized: the key is missing or wrong (compared in constant time).
    """
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization")
    if given is None and auth is not None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )


ApiKeyDep = Depends(require_api_key)
