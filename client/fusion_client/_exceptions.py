"""The SDK's exceptions: one tree, one root, so ``except FusionError`` catches every service failure.

```
FusionError
├── TransportError        the request did not complete; ``__cause__`` is the httpx error
│   ├── ConnectError      the server could not be reached (down, wrong URL, refused)
│   └── Timeout           connect, read, write or pool timeout
├── APIError              the server answered with an error status and ``{"error": message}``
│   ├── InvalidInput      400, 413, 422: the request was wrong; ``message`` says why
│   ├── AuthenticationError  401, 403: missing or wrong API key
│   ├── NotFound          404: unknown model or version
│   ├── Unavailable       503: not ready or overloaded (after the retries ran out)
│   └── ServerError       any other 5xx
└── DecodeError           the answer could not be understood (not JSON, missing fields, bad tensor)
```

Mistakes made locally before anything is sent (a file that does not exist, an argument of the wrong
type) raise the usual ``FileNotFoundError``, ``TypeError`` and ``ValueError``.
"""

from __future__ import annotations

import httpx


class FusionError(Exception):
    """Root of every error the SDK raises about talking to the server."""


class TransportError(FusionError):
    """The request did not complete; the original httpx exception is ``__cause__``."""


class ConnectError(TransportError):
    """The server could not be reached: it is down, the URL is wrong, or the port is closed."""


class Timeout(TransportError):
    """No answer within the client's timeout (connect, read, write or connection pool)."""


class DecodeError(FusionError):
    """The server answered, but not in a form the SDK understands."""


class APIError(FusionError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status.
        message: The server's explanation (the ``error`` field of its JSON body).
        response: The raw :class:`httpx.Response`, for headers and anything else.
    """

    def __init__(self, message: str, *, status_code: int, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response = response

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class InvalidInput(APIError):
    """The server rejected the request's content (400, 413 or 422); ``message`` says what to fix."""


class AuthenticationError(APIError):
    """The API key is missing or wrong (401, 403): pass ``api_key=`` or set ``FUSION_API_KEY``."""


class NotFound(APIError):
    """The model or version does not exist (404)."""


class Unavailable(APIError):
    """The server is not ready or is overloaded (503), still so after the retries ran out.

    Attributes:
        retry_after: Seconds the server asked the client to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, response=response)
        self.retry_after = retry_after


class ServerError(APIError):
    """The server failed (a 5xx other than 503)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidInput,
    413: InvalidInput,
    422: InvalidInput,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFound,
}


def error_for_response(response: httpx.Response, *, retry_after: float | None = None) -> APIError:
    """Build the exception for an error response, carrying the server's own message."""
    message = _error_message(response)
    status = response.status_code
    if status == 503:
        return Unavailable(message, status_code=status, response=response, retry_after=retry_after)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    return cls(message, status_code=status, response=response)


def wrap_transport_error(exc: httpx.RequestError, url: str) -> TransportError:
    """Translate an httpx transport failure into the SDK's tree (the caller raises it ``from exc``)."""
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer from {url} in time ({type(exc).__name__}: {exc or 'timed out'})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"cannot connect to {url}: {exc}")
    return TransportError(f"request to {url} failed: {type(exc).__name__}: {exc}")


def _error_message(response: httpx.Response) -> str:
    """The ``error`` field of the JSON body, else the body text, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if error is not None:
            return error if isinstance(error, str) else str(error)
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase or f"HTTP {response.status_code}"
