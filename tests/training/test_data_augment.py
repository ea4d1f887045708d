"""Capture augmentation: each step does what it says, stays in range, and is seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from app.media import decode_audio
from tests.media_fixtures import tone
from training.data import augment


@pytest.fixture(scope="module")
def word() -> np.ndarray:
    """A 0.5 s 'word': a 440 Hz tone with a smooth envelope, at 16 kHz."""
    wave = tone(0.5, augment.RATE, freq=440.0, amplitude=0.8).astype(np.float32)
    return wave * np.hanning(len(wave)).astype(np.float32)


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


def test_speed_pitch_changes_length_and_pitch_together(word: np.ndarray) -> None:
    fast = augment.speed_pitch(word, 1.15)
    assert fast.dtype == np.float32
    assert len(fast) == pytest.approx(len(word) / 1.15, abs=2)
    assert _peak_hz(fast, augment.RATE) == pytest.approx(440 * 1.15, rel=0.02)
    with pytest.raises(ValueError, match="speed factor"):
        augment.speed_pitch(word, 3.0)


def test_reverb_adds_a_decaying_tail_and_keeps_the_peak(word: np.ndarray) -> None:
    wet = augment.reverb(word, 0.5, 0.5, np.random.default_rng(0))
    assert wet.dtype == np.float32 and len(wet) == len(word) + int(0.5 * augment.RATE) - 1
    assert np.abs(wet).max() == pytest.approx(np.abs(word).max(), rel=1e-5)
    tail = wet[len(word) :]
    first, last = (np.sqrt(np.mean(part**2)) for part in np.array_split(tail, 4)[::3])
    assert first > 10 * last > 0  # the room dies away


def test_telephone_is_8_khz_and_band_limited() -> None:
    rng = np.random.default_rng(1)
    white = (0.3 * rng.standard_normal(augment.RATE)).astype(np.float32)
    phone = augment.telephone(white)
    assert phone.dtype == np.float32 and len(phone) == augment.PHONE_RATE
    freqs, power = signal.welch(phone, fs=augment.PHONE_RATE, nperseg=512)
    band = power[(freqs > 500) & (freqs < 3000)].mean()
    assert power[freqs < 100].mean() < band / 100 and power[freqs > 3800].mean() < band / 30


def test_mulaw_round_trip_is_close_and_quantised(word: np.ndarray) -> None:
    out = augment.mulaw(word)
    assert out.dtype == np.float32 and out.shape == word.shape
    assert np.abs(out - word).max() < 0.05 and len(np.unique(out)) <= 255


def test_gain_dc_silence_and_floor(word: np.ndarray) -> None:
    quiet = augment.gain(word, -20.0, dc=0.01)
    assert np.abs(quiet - 0.01).max() == pytest.approx(10 ** (-20 / 20), rel=1e-4)
    assert quiet.mean() == pytest.approx(0.01, abs=1e-3)
    padded = augment.pad_silence(word, 0.25, 0.1)
    assert len(padded) == len(word) + 4000 + 1600 and not padded[:4000].any()
    hissy = augment.noise_floor(padded, 30.0, np.random.default_rng(2))
    active = word[np.abs(word) > 0.1 * np.abs(word).max()]
    expected = np.sqrt(np.mean(active.astype(float) ** 2)) / 10 ** (30 / 20)  # 30 dB under the speech
    assert hissy[:4000].std() == pytest.approx(expected, rel=0.1)


def test_capture_is_seeded_in_range_and_decodes(word: np.ndarray) -> None:
    outs = [augment.capture(word, np.random.default_rng([0, i])) for i in range(24)]
    again = augment.capture(word, np.random.default_rng([0, 5]))
    np.testing.assert_array_equal(again[0], outs[5][0])
    assert {rate for _, rate in outs} == {augment.RATE, augment.PHONE_RATE}  # some phone lines
    for wave, rate in outs:
        assert wave.dtype == np.float32 and np.abs(wave).max() <= 1.0 and np.isfinite(wave).all()
        clip = decode_audio(augment.to_wav(wave, rate))  # the server's own decoder
        assert clip.shape == (16000,) and np.abs(clip).max() > 0
    lengths = {len(w) * augment.RATE // r for w, r in outs}
    assert len(lengths) > 10  # speed and silence vary the clip
