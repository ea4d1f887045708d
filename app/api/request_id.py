"""Request ids: every answer carries ``X-Request-ID``, and every error body its ``request_id``.

Every answer also carries ``Server-Timing: app;dur=<ms>``: the time from the request reaching the
app to its answer's headers (body read, decode, queue, model, encoding), which a browser shows in
its network panel and the playground shows next to each answer.

A client's own ``X-Request-ID`` is kept when it is a sane token (what a proxy or a tracing
library sends), so one id follows a request through the client's logs, the proxy's and ours;
otherwise the server makes one. Error messages stay short; the details go to the server log
under the same id, which is all a user needs to quote in a bug report.

Pure ASGI (not ``BaseHTTPMiddleware``), like the other middleware: a few microseconds a request.
"""

from __future__ import annotations

import itertools
import os
import re
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_TIMING_KEY = b"server-timing"
_ACCEPTED = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$")
"""A client's id is echoed only if it is this short and this plain (no spaces, quotes or controls)."""


class _Ids:
    """Ids unique to this process's lifetime: a random 64-bit prefix and a counter, 32 hex digits.

    ``uuid4()`` reads the kernel's random source for every request (about 1% of the server's
    time at full load). Ids only need to tell requests apart in logs; the prefix is drawn again
    in a forked worker, so workers never share one.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count()

    def new(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), os.urandom(8).hex()
        return f"{self._prefix}{next(self._count) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


new_request_id = _Ids().new


def request_id(request: Request) -> str:
    """The id of this request (set by :class:`RequestIdMiddleware`; made here if it did not run)."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = new_request_id()
    return rid


class RequestIdMiddleware:
    """Take or make the request's id, keep it in ``scope["state"]``, add it to the answer's headers,
    with the time the app took (``Server-Timing``).

    The id lives in the scope itself, which every layer shares, so the error handlers (even the
    500 one, which Starlette runs outside all middleware) put the same id in the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == _HEADER_KEY), None)
        rid = given.decode() if given is not None and _ACCEPTED.match(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == _HEADER_KEY for k, _ in headers):
                    headers.append((_HEADER_KEY, raw))
                headers.append((_TIMING_KEY, b"app;dur=%.2f" % ((time.perf_counter() - started) * 1e3)))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
