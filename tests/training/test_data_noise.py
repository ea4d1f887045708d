"""Noise functions: level 0 is the identity, more level is more noise, the SNR is what it says."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from app.media import encode_text
from tests.media_fixtures import digit_pattern, tone
from training.data.noise import (
    AUDIO_SNR_DB,
    audio_noise,
    corrupt_text,
    corrupt_texts,
    image_noise,
    snr_db,
    text_noise,
)

LEVELS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
WORDS = ["seven", "sieben", "семь", "七", "שבע", "เจ็ด", "dziewięć", "huit"] * 25


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([np.roll(digit_pattern(), rng.integers(-3, 4), axis=1) for _ in range(64)])


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.stack([tone(1.0, 16000, freq=200 + 20 * i, amplitude=0.5) for i in range(16)]).astype(
        np.float32
    )


def test_level_zero_is_the_identity(images: np.ndarray, clips: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(image_noise(images, 0.0, rng), images)
    np.testing.assert_array_equal(audio_noise(clips, 0.0, rng), clips)
    np.testing.assert_array_equal(text_noise(WORDS, 0.0, rng), np.stack([encode_text(w) for w in WORDS]))


def test_image_noise_grows_with_level(images: np.ndarray) -> None:
    errors = [
        np.mean((image_noise(images, lv, np.random.default_rng(1)).astype(float) - images) ** 2)
        for lv in LEVELS
    ]
    assert errors[0] == 0 and all(a < b for a, b in zip(errors, errors[1:], strict=False))
    noisy = image_noise(images, 0.5, np.random.default_rng(1))
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape


def test_audio_noise_hits_the_snr_it_names(clips: np.ndarray) -> None:
    quiet = clips / 100  # quiet enough that even -30 dB of noise needs no gain reduction
    for level in LEVELS[1:]:
        noisy = audio_noise(quiet, level, np.random.default_rng(2))
        assert noisy.dtype == np.float32 and noisy.shape == quiet.shape
        signal, noise = np.mean(quiet.astype(float) ** 2), np.mean((noisy - quiet).astype(float) ** 2)
        assert 10 * np.log10(signal / noise) == pytest.approx(snr_db(level), abs=0.2)
    assert snr_db(1.0) == AUDIO_SNR_DB[1] and np.isinf(snr_db(0.0))
    assert all(a > b for a, b in zip(snr_db(np.array(LEVELS)), snr_db(np.array(LEVELS[1:])), strict=False))


def test_loud_noisy_audio_is_scaled_not_clipped(clips: np.ndarray) -> None:
    noisy = audio_noise(clips, 1.0, np.random.default_rng(2))
    peaks = np.abs(noisy).max(axis=1)
    np.testing.assert_allclose(peaks, 1.0, rtol=1e-6)  # scaled to full scale ...
    assert ((np.abs(noisy) > 0.999).sum(axis=1) < 5).all()  # ... not flattened against it


def test_silent_audio_stays_silent() -> None:
    silent = np.zeros((2, 16000), np.float32)
    np.testing.assert_array_equal(audio_noise(silent, 1.0, np.random.default_rng(0)), silent)


def test_text_corruption_grows_with_level() -> None:
    def damage(level: float) -> float:
        noisy = corrupt_texts(WORDS, level, np.random.default_rng(3))
        return float(
            np.mean(
                [1 - difflib.SequenceMatcher(None, a, b).ratio() for a, b in zip(WORDS, noisy, strict=True)]
            )
        )

    scores = [damage(lv) for lv in LEVELS]
    assert scores[0] == 0 and all(a < b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[-1] > 0.6  # level 1 leaves little of the word


def test_corrupted_text_is_never_blank_and_blank_stays_blank() -> None:
    rng = np.random.default_rng(4)
    assert all(corrupt_text("七", 1.0, rng).strip() for _ in range(200))
    out = text_noise(["seven", ""], 1.0, rng)
    assert out[0].any() and not out[1].any()


def test_per_sample_levels(images: np.ndarray) -> None:
    levels = np.where(np.arange(len(images)) % 2 == 0, 0.0, 0.8)
    noisy = image_noise(images, levels, np.random.default_rng(5))
    np.testing.assert_array_equal(noisy[::2], images[::2])
    assert all((noisy[i] != images[i]).any() for i in range(1, len(images), 2))


def test_same_generator_state_same_noise(images: np.ndarray, clips: np.ndarray) -> None:
    for fn, x in ((image_noise, images), (audio_noise, clips)):
        np.testing.assert_array_equal(
            fn(x, 0.5, np.random.default_rng(6)), fn(x, 0.5, np.random.default_rng(6))
        )
    a, b = (text_noise(WORDS, 0.5, np.random.default_rng(6)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan")])
def test_level_outside_zero_one_is_refused(images: np.ndarray, level: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_noise(images, level, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt_texts(["seven"], level, np.random.default_rng(0))
