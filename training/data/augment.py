"""Capture-like augmentation of speech: what a phone, a room and a recorder do to a clean voice.

Synthetic voices come out of the engine clean, level and centred; a person's recording does not.
Each function here changes one thing real capture changes and is seeded by its caller, so a
training clip is the same in every build. :func:`capture` chains them at random and returns a
WAV file, which the data set then decodes with the server's own decoder
(:func:`app.media.decode_audio`), so a telephone clip reaches the model through the same
8 kHz -> 16 kHz resampling as a user's telephone recording.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

RATE = 16_000
"""Sample rate of the clips these functions take and (except :func:`telephone`) return."""
PHONE_RATE = 8_000
PHONE_BAND = (300.0, 3400.0)
SPEED = (0.85, 1.15)
"""Speed factor range of :func:`speed_pitch` (a factor above 1 is faster and higher)."""
RT60 = (0.15, 0.8)
"""Reverberation time range (s) of the synthetic rooms."""
PEAK_DB = (-30.0, -1.0)
"""Peak level range (dBFS) after :func:`gain`."""
DC = 0.05
SILENCE_S = (0.0, 0.6)
"""Leading and trailing silence, each drawn from this range (s)."""
FLOOR_SNR_DB = (25.0, 50.0)
"""Background hiss under the whole clip, so added silence is not digital zero."""
P = {"speed": 0.8, "reverb": 0.5, "silence": 0.7, "floor": 0.5, "phone": 0.35, "mulaw": 0.15, "dc": 0.3}
"""Probability of each step in :func:`capture` (the gain step always runs)."""
_PHONE_SOS = signal.butter(4, PHONE_BAND, btype="bandpass", fs=RATE, output="sos")
MU = 255.0


def speed_pitch(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster, which raises its pitch by the same factor (tape speed).

    Resampling by ``1 / factor`` and reading the result at the old rate is the classic trick;
    soxr keeps it free of aliasing.
    """
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must lie in [0.5, 2], got {factor}")
    return _f32(soxr.resample(wave, RATE, RATE / factor, quality="HQ"))


def reverb(wave: np.ndarray, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room: a direct path plus exponentially decaying noise.

    Args:
        wave: float32 clip at :data:`RATE`.
        rt60: time (s) for the tail to decay by 60 dB.
        wet: tail energy relative to the direct path (0 = dry).
        rng: draws the tail.

    Returns:
        The reverberant clip, longer by the tail and scaled to the input's peak.
    """
    n = max(1, int(rt60 * RATE))
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: -60 dB at rt60
    tail[0] = 0.0
    tail *= np.sqrt(wet / max(float(np.sum(tail**2)), 1e-12))
    ir = tail
    ir[0] = 1.0
    out = signal.fftconvolve(wave.astype(np.float64), ir)
    return _f32(out * (_peak(wave) / max(_peak(out), 1e-12)))


def pad_silence(wave: np.ndarray, lead_s: float, trail_s: float) -> np.ndarray:
    """Add silence before and after (a recording rarely starts exactly on the word)."""
    return np.concatenate(
        [np.zeros(int(lead_s * RATE), np.float32), wave, np.zeros(int(trail_s * RATE), np.float32)]
    )


def noise_floor(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white hiss at ``snr_db`` below the clip's active-speech power (a microphone's floor)."""
    active = wave[np.abs(wave) > 0.1 * _peak(wave)] if _peak(wave) > 0 else wave
    power = float(np.mean(active.astype(np.float64) ** 2)) if active.size else 0.0
    return _f32(wave + rng.standard_normal(wave.shape) * np.sqrt(power / 10 ** (snr_db / 10)))


def telephone(wave: np.ndarray) -> np.ndarray:
    """A telephone line: 300-3400 Hz band-pass, then 8 kHz. Returns the clip at :data:`PHONE_RATE`."""
    band = signal.sosfilt(_PHONE_SOS, wave.astype(np.float64))
    return _f32(soxr.resample(band, RATE, PHONE_RATE, quality="HQ"))


def mulaw(wave: np.ndarray) -> np.ndarray:
    """G.711 μ-law round trip: 8-bit companded quantisation, as on a digital phone line."""
    x = np.clip(wave.astype(np.float64), -1.0, 1.0)
    code = np.rint(np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU) * 127.0) / 127.0
    return _f32(np.sign(code) * np.expm1(np.abs(code) * np.log1p(MU)) / MU)


def gain(wave: np.ndarray, peak_db: float, dc: float = 0.0) -> np.ndarray:
    """Scale to a peak of ``peak_db`` dBFS and add a DC offset (a cheap sound card's bias)."""
    out = wave * (10 ** (peak_db / 20) / max(_peak(wave), 1e-12)) + dc
    return _f32(np.clip(out, -1.0, 1.0))


def capture(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random capture chain over a clean clip at :data:`RATE`: ``(wave, sample_rate)``.

    Steps, each with probability :data:`P`: speed and pitch ±15%, a room, leading and
    trailing silence, a noise floor, a telephone line (8 kHz out) or a μ-law round trip, a
    DC offset; the gain step always runs. Every draw is made whether or not its step runs,
    so one step's coin never shifts another step's numbers.
    """
    coins = {name: rng.random() < p for name, p in P.items()}
    factor, rt60, wet = rng.uniform(*SPEED), rng.uniform(*RT60), rng.uniform(0.1, 1.0)
    lead, trail = rng.uniform(*SILENCE_S, size=2)
    floor_db, peak_db, dc = rng.uniform(*FLOOR_SNR_DB), rng.uniform(*PEAK_DB), rng.uniform(-DC, DC)
    room = np.random.default_rng(rng.integers(1 << 62))
    hiss = np.random.default_rng(rng.integers(1 << 62))
    out = _f32(wave)
    if coins["speed"]:
        out = speed_pitch(out, factor)
    if coins["reverb"]:
        out = reverb(out, rt60, wet, room)
    if coins["silence"]:
        out = pad_silence(out, lead, trail)
    if coins["floor"]:
        out = noise_floor(out, floor_db, hiss)
    rate = RATE
    if coins["phone"]:
        out, rate = mulaw(gain(telephone(out), peak_db)), PHONE_RATE
    elif coins["mulaw"]:
        out = mulaw(gain(out, peak_db, dc if coins["dc"] else 0.0))
    else:
        out = gain(out, peak_db, dc if coins["dc"] else 0.0)
    return out, rate


def to_wav(wave: np.ndarray, rate: int) -> bytes:
    """A float32 WAV file of ``wave`` (what the decoder reads, as it would read a user's file)."""
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """float32 mono samples and rate of a WAV file (an engine's output)."""
    wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return wave.mean(axis=1, dtype=np.float32), int(rate)


def _peak(wave: np.ndarray) -> float:
    return float(np.abs(wave).max(initial=0.0))


def _f32(wave: np.ndarray) -> np.ndarray:
    return np.asarray(wave, dtype=np.float32)
