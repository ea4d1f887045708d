"""Text -> the model's ``text`` tensor (uint8 [max_bytes], UTF-8, zero padded).

The model reads bytes, so no tokenizer is needed at serving time. Truncation never
splits a multi-byte character, and is recorded in ``adjusted`` (:mod:`app.media.adjust`).
"""

from __future__ import annotations

import unicodedata

import numpy as np

from app.media.adjust import Adjusted, record
from app.media.errors import MediaError, MediaTooLarge

DEFAULT_MAX_BYTES = 64
DEFAULT_MAX_CHARS = 10_000


def encode_text(
    text: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    adjusted: Adjusted | None = None,
) -> np.ndarray:
    """NFC-normalise, UTF-8 encode, truncate at a character boundary, zero pad.

    ``adjusted`` receives the cut, if any (bytes and characters before and after).

    Raises:
        MediaError: not a string, empty after stripping, holding NUL characters
            (NUL is the padding byte, so it cannot be told apart) or lone surrogates.
        MediaTooLarge: more than ``max_chars`` characters (checked first).
    """
    if not isinstance(text, str):
        raise MediaError("text", f"must be a string, not {type(text).__name__}")
    if len(text) > max_chars:
        raise MediaTooLarge("text", f"has {len(text)} characters, more than the limit of {max_chars}")
    if "\x00" in text:
        raise MediaError("text", "must not contain NUL characters")
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise MediaError("text", "is empty")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # e.g. a lone surrogate from a JSON "\ud800" escape
        raise MediaError("text", f"is not valid Unicode: {exc.reason} at character {exc.start}") from exc
    if len(raw) > max_bytes:
        kept = raw[:max_bytes].decode("utf-8", errors="ignore")
        if adjusted is not None:
            original = {"bytes": len(raw), "characters": len(text)}
            served = {"bytes": len(kept.encode("utf-8")), "characters": len(kept)}
            detail = f"cut from {len(raw)} to {served['bytes']} bytes ({len(text)} to {len(kept)} characters)"
            record(adjusted, "text", ["cut"], original, served, [detail])
        raw = kept.encode("utf-8")
    out = np.zeros(max_bytes, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_text(tensor: np.ndarray) -> str:
    """The inverse of :func:`encode_text`, for reports and debugging."""
    raw = bytes(np.asarray(tensor, dtype=np.uint8).tobytes()).rstrip(b"\x00")
    return raw.decode("utf-8", errors="replace")
