"""Pure ASGI middleware: request guards (body limit, memory budget, content types, readiness
while draining) and per-request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request cost to a few microseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import FusionError, NotReady, PayloadTooLarge
from app.memory import trim
from app.metrics import Metrics
from app.repository import ModelRepository

SMALL_BODY_BYTES = 64 * 1024
"""Bodies up to this size are never refused for the memory budget (they cost next to nothing)."""
TRIM_AFTER_BYTES = 1024 * 1024
"""After a request with a body this large, once no large body is in flight, memory is trimmed."""
READY_PATHS = ("/health/ready", "/v2/health/ready")
JSON_TYPES = ("application/json",)
V2_INFER_TYPES = ("application/json", "application/octet-stream")


class ServerBusy(NotReady):
    """The memory budget for request bodies in flight is spent: retry shortly (503, Retry-After)."""


class UnsupportedMediaType(FusionError):
    """The body's content type is not one the endpoint takes (415)."""

    status_code = 415


class InflightBudget:
    """Body bytes held by all requests in flight together (one event loop: no lock needed)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._trimming = False

    def take(self, nbytes: int, held: int) -> bool:
        """Reserve ``nbytes`` more for a request already holding ``held``; ``False`` if over budget."""
        if held + nbytes > SMALL_BODY_BYTES and self.used + nbytes > self.max_bytes:
            return False
        self.used += nbytes
        return True

    def give_back(self, nbytes: int) -> None:
        """Release a finished request's bytes; trim the heap once no large body is in flight."""
        self.used -= nbytes
        if nbytes >= TRIM_AFTER_BYTES and self.used < TRIM_AFTER_BYTES and not self._trimming:
            self._trimming = True
            task = asyncio.get_running_loop().run_in_executor(None, trim)
            task.add_done_callback(self._trimmed)

    def _trimmed(self, _: Any) -> None:
        self._trimming = False


class BodyGuardMiddleware:
    """Body size limit (413) and memory budget (503 + Retry-After) for large or chunked bodies.

    - A declared ``Content-Length`` over ``max_bytes`` fails at the first read, without reading
      anything; a chunked body as soon as the running total passes the limit.
    - A declared body over 64 KiB reserves its length from the shared budget at its first read,
      or fails with 503 before reading; a chunked one reserves as it is read.

    A body declared at 64 KiB or less (the usual request) passes straight through: the HTTP
    parser holds it to its ``Content-Length``. Errors are raised from ``receive``, so the route's
    error handler renders them like any other (``{"error": ...}``); 503 responses also get
    ``Retry-After`` and ``Connection: close``, so a client is not left uploading a body nobody
    reads. The body-read deadline is the server's (:class:`app.server.GuardedProtocol`).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, budget: InflightBudget) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = -1
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else -1
                break
        if 0 <= declared <= SMALL_BODY_BYTES and declared <= self.max_bytes:
            await self.app(scope, receive, send)
            return
        limit, budget = self.max_bytes, self.budget
        received = held = 0
        refused = False

        async def guarded_receive() -> Message:
            nonlocal received, held, refused
            if declared > limit:
                raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
            if declared > held:
                if not budget.take(declared - held, held):
                    refused = True
                    raise ServerBusy("too many large requests in flight; retry shortly")
                held = declared
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                if received > held:
                    if not budget.take(received - held, held):
                        refused = True
                        raise ServerBusy("too many large requests in flight; retry shortly")
                    held = received
            return message

        async def guarded_send(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                extra = [(b"connection", b"close"), (b"retry-after", b"1")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            if held:
                budget.give_back(held)


class RequestGateMiddleware:
    """Readiness 503 while the server drains (SIGTERM); V2 POST bodies must be JSON or binary (415).

    A browser page on another site can send a "simple" cross-site POST (``text/plain``, a form)
    without asking first; refusing those content types keeps it from driving the API. The
    friendly predict route checks its own (JSON or multipart) in :mod:`app.api.parsing`.
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            error: FusionError | None = None
            if getattr(self.state, "draining", False) and path in READY_PATHS:
                error = NotReady("the server is shutting down")
            elif scope["method"] == "POST" and path.startswith("/v2/"):
                allowed = V2_INFER_TYPES if path.endswith("/infer") else JSON_TYPES
                error = check_content_type(scope, allowed, required=False)
            if error is not None:
                await _send_error(send, error, scope)
                return
        await self.app(scope, receive, send)


def check_content_type(scope: Scope, allowed: tuple[str, ...], *, required: bool) -> FusionError | None:
    """``None`` if the request's content type is one of ``allowed`` (or absent and not required)."""
    given = b""
    for key, value in scope["headers"]:
        if key == b"content-type":
            given = value
            break
    media = given.split(b";", 1)[0].strip().decode("latin-1").lower()
    if media in allowed or media.endswith("+json") and "application/json" in allowed:
        return None
    if not media and not required:
        return None
    return UnsupportedMediaType(
        f"content type {media or '(none)'!r} is not accepted here: send {' or '.join(allowed)}"
    )


async def _send_error(send: Send, error: FusionError, scope: Scope) -> None:
    """The error body the app's handlers write, with the id :class:`RequestIdMiddleware` set."""
    rid = scope.get("state", {}).get("request_id")
    body = json.dumps({"error": error.message, **({"request_id": rid} if rid else {})}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
