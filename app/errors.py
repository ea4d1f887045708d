"""One error tree for the server. Each class carries its HTTP status; one handler renders them.

The service layer raises these without knowing about HTTP; ``app.api.handlers`` turns any
:class:`FusionError` into ``{"error": message, "request_id": ...}`` with ``status_code``. A message
is for the client: short, and free of paths, exception text and file contents (those go to the
server log).
"""

from __future__ import annotations


class ConfigError(Exception):
    """The server cannot start: a setting is wrong. The message says what to set."""


class FusionError(Exception):
    """Base of every error a request can meet. ``status_code`` is what the client receives."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(FusionError):
    """Malformed request: bad JSON, bad base64, unreadable media, empty request."""

    status_code = 400


class Unauthorized(FusionError):
    """Missing or wrong API key."""

    status_code = 401


class Forbidden(FusionError):
    """The caller may not do this here: repository control is switched off on this server."""

    status_code = 403


class NotFound(FusionError):
    """Unknown model, version or route."""

    status_code = 404


class PayloadTooLarge(FusionError):
    """Body, image, audio, text or instance count over a configured limit."""

    status_code = 413


class InvalidInput(FusionError):
    """The request is well formed but breaks the schema: unknown field, wrong type, dtype, shape."""

    status_code = 422


class NotReady(FusionError):
    """The server or the model is not ready (starting, loading, unloaded, refused at load)."""

    status_code = 503


class InferenceFailed(FusionError):
    """The model itself failed on valid input (a server-side fault, never a client mistake)."""

    status_code = 500


class ModelLoadError(Exception):
    """A model version was refused at load; the message says why. Logged, never sent as is."""
