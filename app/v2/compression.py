"""gzip / deflate bodies, as ``tritonclient`` sends and accepts them (request/response compression).

Decompression is bounded: a small compressed body that inflates past the body limit is refused
without ever holding more than the limit in memory.
"""

from __future__ import annotations

import gzip
import zlib

from app.errors import PayloadTooLarge
from app.v2.errors import V2Error

ENCODINGS = ("gzip", "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str | None, *, max_bytes: int) -> bytes:
    """Undo a request's ``Content-Encoding`` (``None`` or ``identity``: the body as is).

    Raises:
        V2Error: an encoding other than gzip/deflate, or a body that does not inflate (400).
        PayloadTooLarge: the inflated body is over ``max_bytes`` (413).
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in _WBITS:
        raise V2Error(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(_WBITS[name])
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise V2Error(f"the body is not valid {name} data: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the body inflates to more than the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise V2Error(f"the {name} body is truncated")
    return out


def negotiate(accept_encoding: str | None) -> str | None:
    """The encoding to answer with: gzip or deflate when the client lists it (q > 0), else None."""
    offered: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        token, _, params = item.strip().partition(";")
        quality = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        offered[token.strip().lower()] = quality
    for name in ENCODINGS:
        if offered.get(name, 0.0) > 0:
            return name
    return None


def compress(body: bytes, encoding: str) -> bytes:
    """Compress a response body with ``gzip`` or ``deflate`` (zlib format, as HTTP means it)."""
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1)
    return zlib.compress(body, 1)
