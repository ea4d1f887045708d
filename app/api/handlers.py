"""One handler per error family: everything becomes ``{"error": message}`` with the right status.

:class:`~app.errors.FusionError` carries its own status. Framework errors (unknown route, wrong
method, bad path parameter, malformed multipart) are rendered the same way. Anything else is a
bug: logged with its traceback and answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.api.parsing import describe_validation
from app.errors import FusionError, Unauthorized

log = logging.getLogger("app.api")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the API."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _fusion_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FusionError)
    if exc.status_code >= 500 and exc.status_code != 503:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return error_response(exc.status_code, exc.message, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers) if exc.headers else None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, describe_validation(exc.errors()))


async def _disconnect(request: Request, exc: Exception) -> JSONResponse:
    log.debug("client went away during %s %s", request.method, request.url.path)
    return error_response(400, "client disconnected before the request was complete")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


def install_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FusionError, _fusion_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _disconnect)
    app.add_exception_handler(Exception, _unexpected)
