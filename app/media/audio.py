"""Audio bytes or arrays -> the model's ``audio`` tensor (float32 [samples], mono, 16 kHz).

libsndfile (via soundfile) decodes WAV/FLAC/OGG; soxr resamples. A clip longer than the
window keeps its most energetic window; a shorter one is centred and zero padded.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from app.media.errors import MediaError, MediaTooLarge

DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_SAMPLES = 16_000
DEFAULT_MAX_SECONDS = 30.0
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    samples: int = DEFAULT_SAMPLES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Decode WAV/FLAC/OGG bytes into a float32 ``[samples]`` mono clip at ``sample_rate``.

    The duration is read from the header and checked before the samples are decoded.

    Raises:
        MediaError: empty, truncated or unreadable bytes, no frames, NaN/inf samples.
        MediaTooLarge: longer than ``max_seconds``.
    """
    if not data:
        raise MediaError("audio", "is empty (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            _check_rate(rate)
            if frames > max_seconds * rate:
                raise MediaTooLarge(
                    "audio", f"lasts {frames / rate:.1f} s, more than the limit of {max_seconds:g} s"
                )
            wave = f.read(dtype="float32", always_2d=True)
    except MediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise MediaError(
            "audio", f"could not be decoded as WAV/FLAC/OGG: {exc}"
        ) from exc
    return _finish(wave, rate, sample_rate=sample_rate, samples=samples)


def audio_from_array(
    array: np.ndarray,
    rate: int,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    samples: int = DEFAULT_SAMPLES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Turn a waveform array sampled at ``rate`` Hz into the model's clip.

    Accepts ``[N]`` (mono) or ``[N, channels]`` float samples in [-1, 1].

    Raises:
        MediaError: wrong rank, bad rate, no samples, NaN/inf.
        MediaTooLarge: longer than ``max_seconds``.
    """
    _check_rate(rate)
    arr = np.asarray(array)
    if arr.ndim not in (1, 2):
        raise MediaError("audio", f"array must have shape [N] or [N, channels]; got {list(arr.shape)}")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MediaError("audio", f"array must hold numbers, not {arr.dtype}")
    if arr.shape[0] > max_seconds * rate:
        raise MediaTooLarge(
            "audio", f"lasts {arr.shape[0] / rate:.1f} s, more than the limit of {max_seconds:g} s"
        )
    wave = arr.astype(np.float32).reshape(arr.shape[0], -1)
    return _finish(wave, rate, sample_rate=sample_rate, samples=samples)


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(
            "audio", f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )


def _finish(wave: np.ndarray, rate: int, *, sample_rate: int, samples: int) -> np.ndarray:
    """[frames, channels] float32 -> mono, resampled, windowed, clipped."""
    if wave.shape[0] == 0 or wave.shape[1] == 0:
        raise MediaError("audio", "has no samples")
    if not np.isfinite(wave).all():
        raise MediaError("audio", "holds NaN or infinite samples")
    mono = wave.mean(axis=1, dtype=np.float32)
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
