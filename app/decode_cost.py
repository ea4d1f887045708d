"""How much work decoding a request's media will take, read from headers and array shapes.

The service decodes a request on the event loop when that costs less than the hop to a worker
thread (about 0.1 ms) would save, and in a thread otherwise. The compressed size says little: a
4 KB PNG can hold 2000 x 2000 pixels (40 ms to decode), a 40 KB FLAC 30 s at 384 kHz (0.5 s).
So the cost is read where it is cheap to read (tens of microseconds): the pixel count from the
image header, frames x channels from the audio header, the element count from an array's shape.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import soundfile as sf
from PIL import Image

from app.inputs import RawInput, Sample, b64_payload

INLINE_PIXELS = 65_536
"""Most image pixels (all samples together) decoded inline: 256 x 256, about 0.5 ms."""
INLINE_SAMPLES = 32_000
"""Most audio samples (frames x channels, all clips together) decoded inline: 2 s of 16 kHz mono,
about 0.4 ms as WAV and 1.5 ms as FLAC."""


@dataclass(frozen=True, slots=True)
class DecodeCost:
    """The work a request's decoding holds: pixels of its images, samples of its audio."""

    pixels: int = 0
    samples: int = 0

    @property
    def inline(self) -> bool:
        """Whether decoding is cheap enough to run on the event loop."""
        return self.pixels <= INLINE_PIXELS and self.samples <= INLINE_SAMPLES


def probe(samples: Sequence[Sample]) -> tuple[list[Sample], DecodeCost]:
    """The decoding cost of ``samples``, and the samples with base64 payloads already decoded.

    Base64 is decoded here, once, since the headers are inside it; the returned samples carry
    the bytes (kind ``bytes``), which :func:`app.inputs.decode_samples` then decodes. A header
    that cannot be read counts as free: decoding such a payload fails fast.

    Raises:
        BadRequest: a payload that is not valid base64 (field named).
    """
    pixels = audio = 0
    out: list[Sample] = []
    for sample in samples:
        unwrapped: dict[str, RawInput] = {}
        for modality, raw in sample.items():
            if raw.kind == "b64":
                raw = RawInput("bytes", b64_payload(raw), raw.field, raw.sample_rate)
            unwrapped[modality] = raw
            if modality == "image":
                pixels += _image_pixels(raw)
            elif modality == "audio":
                audio += _audio_samples(raw)
        out.append(unwrapped)
    return out, DecodeCost(pixels, audio)


def _image_pixels(raw: RawInput) -> int:
    if raw.kind == "array":
        return _elements(raw.value)
    try:
        with Image.open(io.BytesIO(raw.value)) as img:  # reads the header, not the pixels
            width, height = img.size
    except Exception:  # unreadable, or a bomb: the decoder says which, at once
        return 0
    return width * height


def _audio_samples(raw: RawInput) -> int:
    if raw.kind == "array":
        return _elements(raw.value)
    try:
        with sf.SoundFile(io.BytesIO(raw.value)) as f:  # reads the header, not the samples
            return int(f.frames) * int(f.channels)
    except Exception:  # unreadable: the decoder says why, at once
        return 0


def _elements(value: Any) -> int:
    """Elements of an ndarray, or of nested lists judged by their first items (cheap, no copy)."""
    size = getattr(value, "size", None)
    if isinstance(size, int):
        return size
    count = 1
    while isinstance(value, list):
        count *= len(value)
        if not value:
            break
        value = value[0]
    return count
