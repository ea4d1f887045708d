"""Annotated dependency aliases: what a route needs, taken from ``app.state`` (set by ``create_app``).

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which costs
a thread hand-off per dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.metrics import Metrics
from app.service import InferenceService


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def require_api_key(request: Request) -> None:
    """With ``FUSION_API_KEY`` set, require ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Raises:
        Unauthorized: the key is missing or wrong (compared in constant time).
    """
    expected = request.app.state.settings.api_key
    if expected is not None and not _key_matches(request, expected):
        raise Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )


async def require_repository_control(request: Request) -> None:
    """Repository control (index, load, unload) is for operators, not for every API client.

    Off unless ``FUSION_REPOSITORY_CONTROL`` is true; then ``FUSION_ADMIN_API_KEY`` is required
    when set, else the ordinary API key rules apply. A caller without the ordinary key is told
    401 first, so a stranger does not even learn whether control is on.

    Raises:
        Unauthorized: the (admin) key is missing or wrong.
        Forbidden: repository control is off on this server.
    """
    settings: Settings = request.app.state.settings
    admin = settings.admin_api_key
    if not settings.repository_control or admin is None:
        await require_api_key(request)
    if not settings.repository_control:
        raise Forbidden(
            "repository control is off on this server: its operator can set "
            "FUSION_REPOSITORY_CONTROL=true (and FUSION_ADMIN_API_KEY) to allow index, load and unload"
        )
    if admin is not None and not _key_matches(request, admin):
        raise Unauthorized(
            "missing or wrong admin key: repository control needs FUSION_ADMIN_API_KEY as "
            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )


def _key_matches(request: Request, expected: SecretStr) -> bool:
    """Whether the request carries ``expected`` (X-API-Key, else a Bearer token), in constant time."""
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization")
    if given is None and auth is not None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


ApiKeyDep = Depends(require_api_key)
RepositoryControlDep = Depends(require_repository_control)
