"""Audio bytes or arrays -> the model's ``audio`` tensor (float32 [samples], mono, at the spec's
rate; the digits' spec is 1 s at 16 kHz).

libsndfile (via soundfile) decodes WAV/FLAC/OGG; soxr resamples. A clip longer than the
window keeps its most energetic window; a shorter one is centred and zero padded. What changed
(channels mixed down, rate, cut or padding) is recorded in ``adjusted`` (:mod:`app.media.adjust`).
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

from app.media.adjust import Adjusted, record
from app.media.errors import MediaError, MediaTooLarge

DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_SAMPLES = 16_000
DEFAULT_MAX_SECONDS = 30.0
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
MAX_ARRAY_CHANNELS = 32
"""More "channels" than this in an array almost surely means a channels-first array."""
_BLOCK_SAMPLES = 1 << 20
"""Samples (frames x channels) decoded at a time, so memory stays bounded for any channel count."""


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    samples: int = DEFAULT_SAMPLES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    adjusted: Adjusted | None = None,
) -> np.ndarray:
    """Decode WAV/FLAC/OGG bytes into a float32 ``[samples]`` mono clip at ``sample_rate``.

    ``adjusted`` receives what was changed to fit (see :func:`fit_window`).

    The duration is read from the header and checked before the samples are decoded, and the
    channels are mixed down block by block: a small compressed file with many channels cannot
    make the decoder allocate more than the mono clip.

    Raises:
        MediaError: empty, truncated or unreadable bytes, no frames, NaN/inf samples.
        MediaTooLarge: longer than ``max_seconds``.
    """
    if not data:
        raise MediaError("audio", "is empty (0 bytes)")
    pcm = pcm_wav(data)
    if pcm is not None:  # 16-bit PCM WAV: read in place, same samples as libsndfile gives
        return _decode_pcm(pcm, sample_rate, samples, max_seconds, adjusted)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames, channels = int(f.samplerate), int(f.frames), int(f.channels)
            _check_rate(rate)
            limit = int(max_seconds * rate)
            if frames > limit:
                raise MediaTooLarge(
                    "audio", f"lasts {frames / rate:.1f} s, more than the limit of {max_seconds:g} s"
                )
            blocks, read = [], 0
            for block in f.blocks(
                blocksize=max(1, _BLOCK_SAMPLES // max(channels, 1)), dtype="float32", always_2d=True
            ):
                read += block.shape[0]
                if read > limit:  # the header understated the length
                    raise MediaTooLarge("audio", f"lasts more than the limit of {max_seconds:g} s")
                blocks.append(block.mean(axis=1, dtype=np.float32))
    except MediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError, OverflowError) as exc:
        raise MediaError("audio", f"could not be decoded as WAV/FLAC/OGG: {exc}") from exc
    mono = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    out = _finish(mono, rate, sample_rate=sample_rate, samples=samples)
    if adjusted is not None:
        _note(adjusted, mono.shape[0], rate, channels, sample_rate, samples)
    return out


def audio_from_array(
    array: np.ndarray,
    rate: int,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    samples: int = DEFAULT_SAMPLES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    adjusted: Adjusted | None = None,
) -> np.ndarray:
    """Turn a waveform array sampled at ``rate`` Hz into the model's clip (``adjusted`` as in
    :func:`decode_audio`).

    Accepts ``[N]`` (mono) or ``[N, channels]`` samples in [-1, 1]. Float samples beyond that
    range are clipped, as for float audio files; integer samples beyond it are refused, since
    they are almost surely raw PCM (e.g. int16) that needs scaling, and clipping would turn
    them into a square wave.

    Raises:
        MediaError: wrong rank or channel count, bad rate, no samples, NaN/inf, unscaled PCM.
        MediaTooLarge: longer than ``max_seconds``.
    """
    rate = _check_rate(rate)
    arr = np.asarray(array)
    if arr.ndim not in (1, 2):
        raise MediaError("audio", f"array must have shape [N] or [N, channels]; got {list(arr.shape)}")
    if arr.ndim == 2 and arr.shape[1] > MAX_ARRAY_CHANNELS:
        raise MediaError(
            "audio",
            f"array has shape {list(arr.shape)}: more than {MAX_ARRAY_CHANNELS} channels; "
            "arrays are [N, channels], so transpose a channels-first array",
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise MediaError("audio", f"array must hold numbers, not {arr.dtype}")
    if arr.shape[0] > max_seconds * rate:
        raise MediaTooLarge(
            "audio", f"lasts {arr.shape[0] / rate:.1f} s, more than the limit of {max_seconds:g} s"
        )
    if arr.size and np.issubdtype(arr.dtype, np.integer) and (arr.min() < -1 or arr.max() > 1):
        raise MediaError(
            "audio",
            f"integer samples must lie in [-1, 1], got {arr.min()}..{arr.max()}; send floats in [-1, 1] "
            "(divide int16 PCM by 32768)",
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        wave = arr.astype(np.float32)
    if wave.ndim == 1:
        wave = wave[:, None]
    if wave.shape[1] == 0:
        raise MediaError("audio", "has no samples")
    out = _finish(wave.mean(axis=1, dtype=np.float32), rate, sample_rate=sample_rate, samples=samples)
    if adjusted is not None:
        _note(adjusted, wave.shape[0], rate, wave.shape[1], sample_rate, samples)
    return out


class PcmWav(NamedTuple):
    """A plain 16-bit PCM WAV: its rate, channels and the samples (a view of the bytes)."""

    rate: int
    channels: int
    frames: int
    data: memoryview


def pcm_wav(data: bytes) -> PcmWav | None:
    """The header of a plain 16-bit PCM WAV read in Python (a few microseconds), else ``None``.

    Only the simple layout is taken (``fmt `` tag 1, 16 bits, a ``data`` chunk that is all
    there); anything else, odd or damaged included, is left to libsndfile.
    """
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    view, pos, fmt = memoryview(data), 12, None
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if tag == b"fmt " and size >= 16:
            tag_, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag_ != 1 or bits != 16 or channels < 1 or align != 2 * channels:
                return None
            fmt = (rate, channels)
        elif tag == b"data":
            if fmt is None or body + size > len(data) or size % (2 * fmt[1]):
                return None
            frames = size // (2 * fmt[1])
            return PcmWav(fmt[0], fmt[1], frames, view[body : body + size])
        pos = body + size + (size & 1)
    return None


def _decode_pcm(
    pcm: PcmWav, sample_rate: int, samples: int, max_seconds: float, adjusted: Adjusted | None
) -> np.ndarray:
    """:func:`decode_audio` for a :func:`pcm_wav`: int16 / 32768 and the channel mean, in float32
    as libsndfile computes them (bit for bit), then the same checks and window."""
    rate = _check_rate(pcm.rate)
    if pcm.frames > int(max_seconds * rate):
        raise MediaTooLarge(
            "audio", f"lasts {pcm.frames / rate:.1f} s, more than the limit of {max_seconds:g} s"
        )
    ints = np.frombuffer(pcm.data, dtype="<i2").reshape(pcm.frames, pcm.channels)
    scaled = ints.astype(np.float32) * np.float32(1 / 32768)
    mono = scaled[:, 0] if pcm.channels == 1 else scaled.mean(axis=1, dtype=np.float32)
    out = _finish(mono, rate, sample_rate=sample_rate, samples=samples)
    if adjusted is not None:
        _note(adjusted, pcm.frames, rate, pcm.channels, sample_rate, samples)
    return out


def _note(adjusted: Adjusted, frames: int, rate: int, channels: int, sample_rate: int, samples: int) -> None:
    """Record what :func:`_finish` did to a clip of ``frames`` frames at ``rate`` Hz."""
    actions, details = [], []
    if channels > 1:
        actions.append("mixed_down")
        details.append(f"mixed down from {channels} channels to mono")
    if rate != sample_rate:
        actions.append("resampled")
        details.append(f"resampled from {rate} Hz to {sample_rate} Hz")
    seconds, window = frames / rate, samples / sample_rate
    resampled = frames if rate == sample_rate else round(frames * sample_rate / rate)
    if resampled > samples:
        actions.append("cut")
        details.append(f"cut from {seconds:.2f} s to {window:.2f} s (the most energetic window kept)")
    elif resampled < samples:
        actions.append("padded")
        details.append(f"padded from {seconds:.2f} s to {window:.2f} s (centred in silence)")
    original = {"seconds": round(seconds, 3), "sample_rate": rate, "channels": channels}
    served = {"seconds": round(window, 3), "sample_rate": sample_rate, "channels": 1}
    record(adjusted, "audio", actions, original, served, details)


def _check_rate(rate: object) -> int:
    """The sample rate as an int, or MediaError: a whole number of Hz within the supported range."""
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
        raise MediaError("audio", f"sample rate must be a number of Hz, not {type(rate).__name__}")
    if not float(rate).is_integer() or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(
            "audio",
            f"sample rate {rate} Hz is not a whole number within {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
        )
    return int(rate)


def _finish(mono: np.ndarray, rate: int, *, sample_rate: int, samples: int) -> np.ndarray:
    """float32 mono -> resampled, windowed, clipped."""
    if mono.shape[0] == 0:
        raise MediaError("audio", "has no samples")
    if not np.isfinite(mono).all():  # any non-finite channel makes the mix non-finite
        raise MediaError("audio", "holds NaN or infinite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return fit_window(np.clip(mono, -1.0, 1.0), samples)


def fit_window(mono: np.ndarray, samples: int) -> np.ndarray:
    """Keep the most energetic ``samples``-long window, or centre and zero pad a short clip."""
    n = mono.shape[0]
    if n == samples:
        return mono.astype(np.float32, copy=True)
    out = np.zeros(samples, dtype=np.float32)
    if n < samples:
        start = (samples - n) // 2
        out[start : start + n] = mono
        return out
    energy = np.concatenate(([0.0], np.cumsum(mono.astype(np.float64) ** 2)))
    window = energy[samples:] - energy[: n - samples + 1]
    start = int(np.argmax(window))
    out[:] = mono[start : start + samples]
    return out
