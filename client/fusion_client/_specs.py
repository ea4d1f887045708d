"""Input specs in the SDK: a model card's ``spec`` and an answer's ``adjusted`` (docs/specs.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What the server changed in one payload to fit the model's input spec.

    Attributes:
        actions: e.g. ``["resampled", "cut"]`` (also ``resized``, ``greyscaled``, ``mixed_down``,
            ``padded``).
        original: The payload as sent (``{"seconds": 3.2, "sample_rate": 44100, "channels": 1}``).
        served: What the model read, in the same terms.
        message: One sentence, e.g. ``audio cut from 3.20 s to 1.00 s (...)``.
    """

    actions: list[str]
    original: dict[str, Any]
    served: dict[str, Any]
    message: str


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The input spec a model was trained at; every payload is made to fit it.

    Attributes:
        image_size: Side of the square image in pixels.
        image_channels: 1 (grey) or 3 (RGB).
        sample_rate: Audio rate in Hz.
        audio_seconds: Audio window; longer clips keep their most energetic window.
        text_bytes: UTF-8 bytes of text kept.
        summary: The spec in words, e.g. ``28x28 grey, 1 s at 16000 Hz, 64 bytes``.
    """

    image_size: int
    image_channels: int
    sample_rate: int
    audio_seconds: float
    text_bytes: int
    summary: str

    @classmethod
    def from_json(cls, data: Any) -> InputSpec | None:
        """Parse a card's ``spec`` (``None`` for a server or card without one)."""
        if not isinstance(data, dict):
            return None
        return cls(
            image_size=int(data["image_size"]),
            image_channels=int(data["image_channels"]),
            sample_rate=int(data["sample_rate"]),
            audio_seconds=float(data["audio_seconds"]),
            text_bytes=int(data["text_bytes"]),
            summary=str(data.get("summary", "")),
        )


def parse_adjusted(data: Any) -> dict[str, Adjustment] | None:
    """An answer's ``adjusted`` (``None`` when absent, null or empty)."""
    if not data:
        return None
    return {
        str(m): Adjustment(
            actions=[str(a) for a in entry["actions"]],
            original=dict(entry.get("from") or {}),
            served=dict(entry.get("to") or {}),
            message=str(entry.get("message", "")),
        )
        for m, entry in data.items()
    }
