"""Builders of real media files (bytes) for tests: PNG/JPEG/TIFF images, WAV/FLAC/OGG audio.

Shared by the media tests and the data-set tests, so each builds its inputs with real encoders
(Pillow, libsndfile) rather than hand-made byte strings.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile as sf
from PIL import Image


def image_bytes(img: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    """``img`` encoded as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def digit_pattern(size: int = 28) -> np.ndarray:
    """A uint8 ``[size, size]`` test card: a bright bar and a gradient, asymmetric on purpose."""
    arr = np.zeros((size, size), dtype=np.uint8)
    arr[size // 4 : size // 4 + 3, 3 : size - 3] = 255
    arr[size // 2 :, size // 2] = np.linspace(40, 220, size - size // 2).astype(np.uint8)
    arr[size - 5, 2:6] = 128
    return arr


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (one row of data): a bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A float64 sine of ``seconds`` at ``rate`` Hz."""
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def audio_bytes(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """``wave`` (``[N]`` or ``[N, channels]``, floats in [-1, 1]) encoded by libsndfile."""
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def dominant_frequency(clip: np.ndarray, rate: int) -> float:
    """The frequency (Hz) of the largest FFT bin of ``clip``."""
    spectrum = np.abs(np.fft.rfft(clip * np.hanning(len(clip))))
    return float(np.argmax(spectrum) * rate / len(clip))
