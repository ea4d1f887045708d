"""The one error of the V2 layer, apart so that every part of :mod:`app.v2` can raise it."""

from __future__ import annotations

from app.errors import BadRequest


class V2Error(BadRequest):
    """A malformed V2 request: bad JSON, unknown datatype, shape and data that disagree (400)."""
