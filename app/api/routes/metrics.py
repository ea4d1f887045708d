"""Prometheus exposition. Always open (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
