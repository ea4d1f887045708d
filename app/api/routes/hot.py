"""The two hot routes (``/v1/.../predict`` and ``/v2/.../infer``) as one plain ASGI dispatcher.

FastAPI's routing and dependency injection cost about a fifth of the event loop's time per
request at full load (py-spy, V2 binary at c=64: route matching over every included router,
the dependency solver, the request/response wrappers). These two routes need none of it: the
path has one parameter or two, the only dependency is the API key check. So this innermost
middleware matches them itself and calls the very endpoint functions the routers declare
(:func:`app.api.routes.v1.predict`, :func:`app.api.routes.v2.infer_endpoint`); the FastAPI
routes stay declared, for the OpenAPI document and as the fallback for other methods.

Everything around a request is unchanged: the outer middleware (request id, metrics, body
guard, content-type gate, CORS) runs as before, errors are rendered by the app's own handlers
(:func:`app.api.handlers.render_error`), and ``scope["route"]`` names the route template for
the metrics, as FastAPI's router would.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import require_api_key
from app.api.handlers import HANDLED, render_error
from app.api.routes import v1, v2
from app.service import path_version

_V1_PREDICT = re.compile(r"/v1/models/([^/]+)/predict")
_V2_INFER = re.compile(r"/v2/models/([^/]+)/(?:versions/([^/]+)/)?infer")


class _Template:
    """What the metrics middleware reads from ``scope["route"]``: the route's path template."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_PREDICT = _Template("/v1/models/{name}/predict")
_INFER = _Template("/v2/models/{name}/infer")
_VERSION_INFER = _Template("/v2/models/{name}/versions/{version}/infer")


class HotRoutes:
    """Answer POST predict/infer directly; hand everything else to the app.

    Args:
        app: the rest of the application (FastAPI's exception middleware and router).
        state: ``app.state`` of the FastAPI app (service and settings).
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # as Starlette's router matches: below the root path
            path = path[len(root) :]
        if path.startswith("/v2/") and (found := _V2_INFER.fullmatch(path)):
            name, version = found.group(1), found.group(2)
            params = {"name": name} if version is None else {"name": name, "version": version}
            scope["route"] = _INFER if version is None else _VERSION_INFER
        elif path.startswith("/v1/") and (found := _V1_PREDICT.fullmatch(path)):
            name, version, params = found.group(1), None, {"name": found.group(1)}
            scope["route"] = _PREDICT
        else:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = params
        request = Request(scope, receive)
        response: Response
        service = self.state.service
        try:
            await require_api_key(request)
            if path[2] == "1":
                response = await v1.predict(request, service, name)
            else:
                number = None if version is None else path_version(name, version)
                response = await v2.infer_endpoint(request, service, name, number)
        except Exception as exc:  # rendered exactly as the app's handlers render it
            await (await render_error(request, exc))(scope, receive, send)
            if not isinstance(exc, HANDLED):
                raise  # a bug: re-raised after its 500, as Starlette's outermost handler does
            return
        await response(scope, receive, send)
