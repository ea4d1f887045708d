"""What decoding changed in a payload to fit the model's input spec, for the answer's ``adjusted``.

A model takes one fixed input size (its manifest's ``decode`` spec): a 640x480 photo is scaled
to the model's square, a 3.2 s clip is cut to the model's window, a 300-byte review to its
byte budget. Decoding does that silently by design, so it also says what it did: a decoder
given an ``adjusted`` dict records one entry per modality it changed, and the server returns
the dict with the answer. Nothing is recorded when the payload already had the spec's shape,
so the common case costs one comparison.
"""

from __future__ import annotations

from typing import Any

Adjusted = dict[str, dict[str, Any]]
"""modality -> ``{"actions": [...], "from": {...}, "to": {...}, "message": "..."}``."""


def record(
    adjusted: Adjusted | None,
    modality: str,
    actions: list[str],
    original: dict[str, Any],
    served: dict[str, Any],
    details: list[str],
) -> None:
    """Add ``modality``'s entry to ``adjusted`` (a no-op without a dict or without actions).

    Args:
        adjusted: the per-sample record, or ``None`` when the caller does not want one.
        modality: ``image``, ``audio`` or ``text``.
        actions: machine-readable verbs, e.g. ``["resampled", "cut"]``.
        original: the payload as sent (``{"seconds": 3.2, "sample_rate": 44100}``).
        served: what the model got (``{"seconds": 1.0, "sample_rate": 16000}``).
        details: one human sentence per action, joined into ``message``.
    """
    if adjusted is None or not actions:
        return
    adjusted[modality] = {
        "actions": actions,
        "from": original,
        "to": served,
        "message": f"{modality} " + "; ".join(details),
    }
