"""The application factory and the server entry point.

``create_app()`` builds a FastAPI app whose lifespan loads the model repository in the
background (``/health/ready`` is 503 until it is done) and unloads it at shutdown.
``run()`` is ``python -m app`` / ``make serve``: uvicorn with the ``FUSION_*`` settings.
Also usable as ``uvicorn app.main:create_app --factory``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from app.api.handlers import install_handlers
from app.api.middleware import (
    BodyGuardMiddleware,
    InflightBudget,
    MetricsMiddleware,
    RequestGateMiddleware,
)
from app.api.openapi import install_openapi
from app.api.request_id import RequestIdMiddleware
from app.api.routes import health, v1, v2
from app.api.routes import metrics as metrics_routes
from app.api.routes.hot import HotRoutes
from app.api.routes.playground import install_playground
from app.config import Settings, load_settings
from app.errors import ConfigError
from app.metrics import Metrics
from app.repository import ModelRepository
from app.service import InferenceService

log = logging.getLogger("app")
VERSION = "0.1.0"
CORS_REQUEST_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Content-Encoding",
    "Inference-Header-Content-Length",
    "X-Request-ID",
]
"""What a browser page may send cross-origin when ``FUSION_CORS_ORIGINS`` allows it."""
NO_OTEL: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's native OpenTelemetry off: no OTel provider is configured here, and asking the
global providers whether one is costs every request a few lookups."""
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Server-Timing", "Inference-Header-Content-Length", "Retry-After"]
DESCRIPTION = """Multimodal (image + audio + text) fusion classifiers served with onnxruntime.

Send any non-empty subset of modalities to `POST /v1/models/{name}/predict`; missing ones are
masked. Errors are always `{"error": "..."}`. See `docs/api.md` and `docs/serving.md`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Settings come from the environment unless given.

    Raises:
        ConfigError: invalid settings or unavailable execution providers (fails at start).
    """
    settings = settings if settings is not None else load_settings()
    _configure_logging(settings.log_level)
    metrics = Metrics()
    repository = ModelRepository(settings, metrics)
    service = InferenceService(repository, settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(repository.start(), name="repository-start")
        loading.add_done_callback(_log_failure)
        loading.add_done_callback(_freeze_heap)
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await repository.close()

    app = FastAPI(
        title="fusionserve",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=NO_OTEL,  # the server has its own /metrics; FastAPI's OTel probe cost ~2%/request
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.repository = repository
    app.state.service = service
    install_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    install_playground(app)  # GET / and /playground/*: the web page, after the API routes
    app.state.draining = False  # set on SIGTERM by app.server: readiness turns 503
    app.add_middleware(HotRoutes, state=app.state)  # innermost: predict/infer without the router
    app.add_middleware(
        BodyGuardMiddleware,
        max_bytes=settings.max_body_bytes,
        budget=InflightBudget(settings.max_inflight_bytes),
    )
    app.add_middleware(RequestGateMiddleware, state=app.state)
    app.add_middleware(MetricsMiddleware, metrics=metrics, repository=repository)
    if settings.cors_origins:  # off by default: no CORS headers, so browsers keep other sites out
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer carries X-Request-ID
    install_openapi(app)
    return app


def run() -> None:
    """Serve on ``FUSION_HOST``:``FUSION_PORT`` with the limits and shutdown of :mod:`app.server`."""
    from app.server import serve

    try:
        settings = load_settings()
        app = create_app(settings)
    except ConfigError as exc:
        print(f"fusionserve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    serve(app, settings)


def _configure_logging(level: str) -> None:
    logging.getLogger("app").setLevel(level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _freeze_heap(_: asyncio.Task[None]) -> None:
    """Move everything alive after loading (modules, sessions, manifests) out of the collector's
    sight: a full collection then scans only what requests made, not the whole server."""
    gc.collect()
    gc.freeze()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("loading the model repository failed", exc_info=task.exception())
