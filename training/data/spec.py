"""Choose a model's input spec (:class:`app.manifest.DecodeParams`) for a data set.

The spec is fixed at training time and saved in the manifest; the server then decodes every
request to it. For your own manifest it is derived from the files' headers (no pixel or
sample is decoded for it), and any part of it can be set on the command line instead:

- image: the median of the pictures' shorter sides, within 16..64 pixels (a CNN on CPU stays
  cheap; a 28x28 digit stays 28x28); RGB if any picture has colour, else grey;
- audio: 16 kHz (or the highest rate all clips have, when lower); the window covers 95% of the
  clips, rounded up to a tenth of a second, within 0.5..10 s;
- text: 95% of the texts fit, rounded up to 32 bytes, within 64..1024 bytes.

Grey specs keep the digit normalisation (``image_normalize``) only at the digits' size;
RGB specs never use it (it re-makes grey digits).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

from app.manifest import DecodeParams
from app.media import DEFAULT_MAX_BYTES, DEFAULT_SAMPLE_RATE, DEFAULT_SIZE

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
IMAGE_SIDES = (16, 64)
AUDIO_SECONDS = (0.5, 10.0)
TEXT_BYTES = (DEFAULT_MAX_BYTES, 1024)
COVER = 95
"""Percentile of the clips / texts the derived window holds whole."""

SpecOverrides = Mapping[str, Any]
"""CLI choices by :class:`DecodeParams` field name, plus ``audio_seconds``; ``None`` = derive."""


def make_spec(overrides: SpecOverrides | None = None, derived: DecodeParams | None = None) -> DecodeParams:
    """``derived`` (default: the digits' spec) with the non-``None`` ``overrides`` applied.

    ``audio_seconds`` is turned into ``audio_samples`` at the final sample rate. Raises
    ``ValueError`` (pydantic's) for a spec that cannot be served, e.g. RGB with normalisation.
    """
    base = (derived or DecodeParams()).model_dump()
    chosen = {k: v for k, v in (overrides or {}).items() if v is not None}
    seconds = chosen.pop("audio_seconds", None)
    base |= chosen
    if seconds is not None:
        base["audio_samples"] = round(float(seconds) * base["sample_rate"])
    elif "sample_rate" in chosen:  # keep the window's length in seconds
        old = derived or DecodeParams()
        base["audio_samples"] = round(old.audio_seconds * base["sample_rate"])
    if base["image_channels"] == 3 or base["image_size"] != DEFAULT_SIZE:
        base["image_normalize"] = bool(chosen.get("image_normalize", False))
    return DecodeParams.model_validate(base)


def derive_spec(rows: Iterable[Mapping[str, Any]], root: Path) -> DecodeParams:
    """The spec the files of a manifest suggest (see the module docstring); headers only.

    Rows whose file cannot be opened are skipped here: decoding reports them with their row.
    """
    sides: list[int] = []
    colour = False
    rates: list[int] = []
    seconds: list[float] = []
    lengths: list[int] = []
    for row in rows:
        if "image" in row:
            try:
                with Image.open(root / str(row["image"])) as img:
                    sides.append(min(img.size))
                    colour = colour or img.mode not in GREY_MODES
            except (OSError, ValueError):
                pass
        if "audio" in row:
            try:
                info = sf.info(str(root / str(row["audio"])))
                rates.append(int(info.samplerate))
                seconds.append(float(info.frames) / max(int(info.samplerate), 1))
            except (OSError, RuntimeError, ValueError):
                pass
        if "text" in row:
            lengths.append(len(unicodedata.normalize("NFC", str(row["text"])).strip().encode("utf-8")))
    spec: dict[str, Any] = {}
    if sides:
        spec["image_size"] = int(np.clip(round(float(np.median(sides))), *IMAGE_SIDES))
        spec["image_channels"] = 3 if colour else 1
    if rates:
        spec["sample_rate"] = min(DEFAULT_SAMPLE_RATE, min(rates))
    if seconds:
        window = math.ceil(float(np.percentile(seconds, COVER)) * 10 - 1e-9) / 10
        spec["audio_seconds"] = float(np.clip(window, *AUDIO_SECONDS))
    if lengths:
        want = 32 * math.ceil(float(np.percentile(lengths, COVER)) / 32)
        spec["text_bytes"] = int(np.clip(want, *TEXT_BYTES))
    return make_spec(spec)
