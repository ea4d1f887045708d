"""Pure ASGI middleware: the request body limit and per-request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request cost to a few microseconds.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge
from app.metrics import Metrics
from app.repository import ModelRepository


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``, before it is read.

    A declared ``Content-Length`` over the limit fails at the first read, without reading
    anything (and without ``100 Continue``); a chunked body fails as soon as the running total
    passes the limit. The error is raised from ``receive``, so the route's error handler renders
    it like any other (``{"error": ...}``, 413).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = -1
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else -1
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared > limit:
                raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class MetricsMiddleware:
    """Counts requests by model, route template and status; times them.

    The model label is the ``{name}`` path parameter only when it names a model on disk, so
    requests for random names cannot blow up the label set.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, repository: ModelRepository) -> None:
        self.app = app
        self.metrics = metrics
        self.repository = repository

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            name = scope.get("path_params", {}).get("name", "")
            model = name if name and self.repository.is_known(name) else ""
            self.metrics.requests.labels(model, endpoint, str(status)).inc()
            self.metrics.latency.labels(model, endpoint).observe(time.perf_counter() - started)
