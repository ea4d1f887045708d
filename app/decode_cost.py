"""The decode stage: request payloads -> model tensors, on the event loop when cheap, else in a thread.

Both APIs come through here, and this is the one place that decides where decoding runs
(:func:`off_loop`):

- ``/v1`` (:func:`decode_request`): base64 is unwrapped once, the work is read from the media
  headers, then :func:`app.inputs.decode_samples` decodes every payload.
- ``/v2`` (:func:`parse_v2`, :func:`adapt_v2`): the body is split and parsed
  (:mod:`app.v2.codec`; binary tensors are views of the body, no copy), then adapted to the
  model's inputs and validated.

Decoding runs on the event loop when that costs less than the hop to a worker thread (about
0.1 ms) would save. The compressed size says little: a 4 KB PNG can hold 2000 x 2000 pixels
(40 ms to decode), a 40 KB FLAC 30 s at 384 kHz (0.5 s). So the cost is read where it is cheap
to read: the pixel count from the image header (a PNG's in Python, ~1 us; others through
Pillow), frames x channels from the audio header (a PCM WAV's in Python, others through
libsndfile), the element count from an array's shape.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import soundfile as sf
from PIL import Image

from app.errors import InvalidInput
from app.inputs import DecodeObserver, Limits, RawInput, Sample, b64_payload, decode_samples
from app.manifest import Manifest
from app.media.audio import pcm_wav
from app.runtime import ModelRuntime
from app.v2 import V2Error, parse_infer_request, to_model_inputs
from app.v2.adapt import count_rows
from app.v2.schemas import InferRequest

INLINE_DECODE_BYTES = 256 * 1024
"""Bodies and payloads above this many bytes are parsed and decoded in a worker thread without
further ado; smaller media are decoded inline unless their headers say otherwise."""
INLINE_V2_ROWS = 16
"""V2 requests with more rows are adapted and validated in a worker thread (about 0.5 ms at 64)."""
INLINE_PIXELS = 65_536
"""Most image pixels (all samples together) decoded inline: 256 x 256, about 0.5 ms."""
INLINE_SAMPLES = 32_000
"""Most audio samples (frames x channels, all clips together) decoded inline: 2 s of 16 kHz mono,
about 0.4 ms as WAV and 1.5 ms as FLAC."""
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
T = TypeVar("T")


async def off_loop(inline: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` here when ``inline``, else in a worker thread (the one place that chooses)."""
    if inline:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


@dataclass(frozen=True, slots=True)
class DecodeCost:
    """The work a request's decoding holds: pixels of its images, samples of its audio."""

    pixels: int = 0
    samples: int = 0

    @property
    def inline(self) -> bool:
        """Whether decoding is cheap enough to run on the event loop."""
        return self.pixels <= INLINE_PIXELS and self.samples <= INLINE_SAMPLES


async def decode_request(
    samples: Sequence[Sample], manifest: Manifest, limits: Limits, observe: DecodeObserver | None = None
) -> list[dict[str, np.ndarray]]:
    """Decode ``/v1`` samples into one tensor per modality per sample (see the module docstring).

    Raises:
        BadRequest: bad base64, unreadable media, wrong array shape or dtype (field named).
        PayloadTooLarge: a payload over a limit (field named).
    """
    size = sum(raw.size for sample in samples for raw in sample.values())
    inline = False
    if size <= INLINE_DECODE_BYTES:
        samples, cost = probe(samples)
        inline = cost.inline
    return await off_loop(inline, decode_samples, samples, manifest, limits, observe)


async def parse_v2(body: bytes, header_length: str | None, max_rows: int) -> InferRequest:
    """Split and parse a V2 body (in a thread when it is large: JSON takes milliseconds per MB).

    Raises:
        V2Error, PayloadTooLarge: as :func:`app.v2.codec.parse_infer_request`.
    """
    inline = len(body) <= INLINE_DECODE_BYTES
    return await off_loop(inline, _parse_v2, body, header_length, max_rows)


def _parse_v2(body: bytes, header_length: str | None, max_rows: int) -> InferRequest:
    return parse_infer_request(body, header_length, max_rows=max_rows)


async def adapt_v2(runtime: ModelRuntime, parsed: InferRequest, max_text_chars: int) -> dict[str, np.ndarray]:
    """V2 tensors -> the validated model inputs (in a thread for more than a few rows).

    Raises:
        V2Error: a request the model cannot take (400). PayloadTooLarge: text over its limit.
    """
    inline = count_rows(parsed.inputs) <= INLINE_V2_ROWS
    return await off_loop(inline, _adapt_v2, runtime, parsed, max_text_chars)


def _adapt_v2(runtime: ModelRuntime, parsed: InferRequest, max_text_chars: int) -> dict[str, np.ndarray]:
    manifest = runtime.serving_manifest()
    inputs = to_model_inputs(manifest, parsed.inputs, parsed.datatypes, max_text_chars=max_text_chars)
    try:
        return runtime.validate(inputs)
    except InvalidInput as exc:  # the protocol answers 400 to a request the model cannot take
        raise V2Error(exc.message) from exc


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
    data: bytes = raw.value
    if data[:16] == _PNG and len(data) >= 24:  # the IHDR chunk is always first
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header, not the pixels
            width, height = img.size
    except Exception:  # unreadable, or a bomb: the decoder says which, at once
        return 0
    return width * height


def _audio_samples(raw: RawInput) -> int:
    if raw.kind == "array":
        return _elements(raw.value)
    pcm = pcm_wav(raw.value)
    if pcm is not None:
        return pcm.frames * pcm.channels
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
