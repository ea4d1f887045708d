"""One handler per error family: everything becomes ``{"error": message, "request_id": id}``.

:class:`~app.errors.FusionError` carries its own status. Framework errors (unknown route, wrong
method, bad path parameter, malformed multipart) are rendered the same way. Anything else is a
bug: logged with its traceback and answered with a 500 that reveals nothing.

The message a client gets is short; the details (the exception behind an error, its text,
object reprs and paths that a library put into a message) go to the server log under the
request's id (:mod:`app.api.request_id`), which the answer carries in its body and its
``X-Request-ID`` header.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.api.parsing import describe_validation
from app.api.request_id import HEADER, request_id
from app.errors import FusionError, NotReady, Unauthorized

log = logging.getLogger("app.api")
_INTERNALS = re.compile(r"<[^<>]{1,200} at 0x[0-9a-fA-F]+>|(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")
"""What a library may put into an error text that is none of a client's business: object reprs
(``<_io.BytesIO object at 0x7f...>``) and absolute paths."""


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error body of the API, with the request id in the body and in the header."""
    rid = request_id(request)
    return JSONResponse(
        {"error": message, "request_id": rid}, status_code=status, headers={**(headers or {}), HEADER: rid}
    )


def public_message(message: str) -> str:
    """``message`` without object reprs and absolute paths (each becomes ``...``)."""
    return _INTERNALS.sub("...", message)


async def _fusion_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FusionError)
    where, rid = f"{request.method} {request.url.path}", request_id(request)
    message = public_message(exc.message)
    if exc.status_code >= 500 and not isinstance(exc, NotReady):
        log.error("%s failed [request %s]: %s", where, rid, exc.message, exc_info=exc)
        if exc.__cause__ is not None:  # it wraps a library's exception, whose text is a detail
            message = "inference failed on this request; the server log has the details"
    elif message != exc.message or exc.__cause__ is not None:
        cause = f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        log.info("%s -> %d [request %s]: %s%s", where, exc.status_code, rid, exc.message, cause)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return error_response(request, exc.status_code, message, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(request, exc.status_code, message, dict(exc.headers) if exc.headers else None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 422, describe_validation(exc.errors()))


async def _disconnect(request: Request, exc: Exception) -> JSONResponse:
    log.debug("client went away during %s %s", request.method, request.url.path)
    return error_response(request, 400, "client disconnected before the request was complete")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id(request)
    log.error("unhandled error in %s %s [request %s]", request.method, request.url.path, rid, exc_info=exc)
    return error_response(request, 500, "internal server error; the server log has the details")


HANDLED = (FusionError, HTTPException, RequestValidationError, ClientDisconnect)
"""What the handlers answer as a client's error; anything else is a bug (500, logged, re-raised)."""


async def render_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer the installed handler gives ``exc`` (for routes served outside FastAPI's router)."""
    if isinstance(exc, FusionError):
        return await _fusion_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_error(request, exc)
    if isinstance(exc, RequestValidationError):
        return await _validation_error(request, exc)
    if isinstance(exc, ClientDisconnect):
        return await _disconnect(request, exc)
    return await _unexpected(request, exc)


def install_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FusionError, _fusion_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _disconnect)
    app.add_exception_handler(Exception, _unexpected)
