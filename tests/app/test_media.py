"""Media decoding: every format and rate a client may send, and every way a payload can be bad."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import app.media as media
from app.media import (
    MediaError,
    MediaTooLarge,
    audio_from_array,
    decode_audio,
    decode_image,
    decode_text,
    encode_text,
    image_from_array,
)
from tests.media_fixtures import (
    audio_bytes,
    digit_pattern,
    dominant_frequency,
    image_bytes,
    png_header_only,
    tone,
)

PATTERN = digit_pattern()


def test_public_api_is_exactly_all() -> None:
    public = {n for n in dir(media) if not n.startswith("_") and n not in ("annotations",)}
    assert public - {"adjust", "audio", "digit", "errors", "image", "text"} == set(media.__all__)
    assert media.MODALITIES == ("image", "audio", "text")


# ---------------------------------------------------------------- images: formats and modes


def test_png_8bit_grayscale_is_exact() -> None:
    out = decode_image(image_bytes(Image.fromarray(PATTERN, mode="L")), normalize=False)
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    np.testing.assert_array_equal(out, PATTERN)


def test_png_1bit_gives_black_and_white() -> None:
    data = image_bytes(Image.fromarray(PATTERN > 100).convert("1"))
    np.testing.assert_array_equal(decode_image(data, normalize=False), np.where(PATTERN > 100, 255, 0))


def test_png_16bit_is_scaled_to_8bit() -> None:
    img16 = Image.fromarray(PATTERN.astype(np.uint16) * 257)  # full 16-bit range
    data = image_bytes(img16)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    np.testing.assert_array_equal(decode_image(data, normalize=False), PATTERN)


def test_la_and_rgba_are_composited_onto_black() -> None:
    alpha = np.zeros_like(PATTERN)
    alpha[:, :14] = 255  # left half opaque, right half transparent
    expected = np.where(alpha == 255, PATTERN, 0)
    la = Image.fromarray(np.stack([PATTERN, alpha], axis=2), mode="LA")
    rgba = Image.fromarray(np.stack([PATTERN, PATTERN, PATTERN, alpha], axis=2), mode="RGBA")
    np.testing.assert_array_equal(decode_image(image_bytes(la), normalize=False), expected)
    np.testing.assert_array_equal(decode_image(image_bytes(rgba), normalize=False), expected)


def test_rgb_uses_luma_weights() -> None:
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: L = 0.299 * 255
    rgb[:14] = PATTERN[:14, :, None]  # grey rows stay their grey value
    out = decode_image(image_bytes(Image.fromarray(rgb)), normalize=False)
    np.testing.assert_array_equal(out[:14], PATTERN[:14])
    assert np.all(np.abs(out[14:].astype(int) - 76) <= 1)


def test_palette_with_transparency() -> None:
    img = Image.fromarray(PATTERN, mode="L").convert("P")
    img.info["transparency"] = int(np.asarray(img)[0, 0])  # the background index is transparent
    out = decode_image(image_bytes(img), normalize=False)
    assert out[0, 0] == 0 and out[PATTERN == 255].min() > 200


def test_jpeg_is_close() -> None:
    smooth = np.tile(np.linspace(0, 255, 28).astype(np.uint8), (28, 1))
    out = decode_image(image_bytes(Image.fromarray(smooth), "JPEG", quality=95), normalize=False)
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_jpeg_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180
    data = image_bytes(Image.fromarray(PATTERN), "JPEG", quality=100, exif=exif)
    out = decode_image(data, normalize=False).astype(int)
    assert np.abs(out - np.rot90(PATTERN, 2)).mean() < np.abs(out - PATTERN).mean() / 4


def test_aspect_is_kept_and_padded_with_black() -> None:
    wide = np.full((28, 56), 255, dtype=np.uint8)  # 2:1 -> a 28x14 band in the middle
    out = decode_image(image_bytes(Image.fromarray(wide)), normalize=False)
    assert out[:7].max() == 0 and out[-7:].max() == 0 and out[8:20].min() == 255


def test_large_image_is_downscaled() -> None:
    big = np.kron(PATTERN, np.ones((10, 10), dtype=np.uint8))  # 280x280
    out = decode_image(image_bytes(Image.fromarray(big)), normalize=False)
    assert np.abs(out.astype(int) - PATTERN).mean() < 4


def test_lab_tiff_does_not_crash() -> None:
    out = decode_image(image_bytes(Image.new("LAB", (28, 28), (128, 0, 0)), "TIFF"), normalize=False)
    assert out.shape == (28, 28) and out.min() == 128


@pytest.mark.parametrize(
    "array",
    [
        PATTERN,
        PATTERN[:, :, None],
        np.repeat(PATTERN[:, :, None], 3, axis=2),
        np.concatenate([np.repeat(PATTERN[:, :, None], 3, axis=2), np.full((28, 28, 1), 255, np.uint8)], 2),
        PATTERN.astype(np.float32) / 255.0,
        PATTERN.astype(np.int64),
        np.ascontiguousarray(PATTERN.T).T,  # non-contiguous view of the same pixels
    ],
    ids=["HW-uint8", "HW1", "HW3", "HW4", "float01", "int64", "strided"],
)
def test_arrays_of_every_layout(array: np.ndarray) -> None:
    np.testing.assert_array_equal(image_from_array(array, normalize=False), PATTERN)


# ---------------------------------------------------------------- images: bad payloads


def _png() -> bytes:
    return image_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"just some text, not an image", "not an image format"),
        (audio_bytes(tone(0.1, 8000), 8000), "not an image format"),
        (_png()[:300], "could not be decoded"),  # cut inside the pixel data
        (_png()[:30], "could not be decoded|not an image format"),  # cut inside the header
    ],
    ids=["empty", "text", "wav", "truncated-data", "truncated-header"],
)
def test_bad_image_bytes(data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message) as info:
        decode_image(data)
    assert info.value.modality == "image" and str(info.value).startswith("image: ")


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(MediaTooLarge, match="64x64 pixels, more than the limit of 1000"):
        decode_image(_png(), max_pixels=1000)
    with pytest.raises(MediaTooLarge, match="7000x7000 pixels, more than the limit of 40000000"):
        decode_image(png_header_only(7000, 7000))  # a 100-byte file; nothing is decoded
    with pytest.raises(MediaTooLarge, match="10000000000 pixels"):  # Pillow's bomb guard: the backstop
        decode_image(png_header_only(100_000, 100_000), max_pixels=10**12)


def test_float_tiff_with_nan_is_refused() -> None:
    arr = np.zeros((28, 28), dtype=np.float32)
    arr[3, 3] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        decode_image(image_bytes(Image.fromarray(arr, mode="F"), "TIFF"))


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.zeros((2, 3, 4, 5)), MediaError, r"shape \[H, W\]"),
        (np.zeros((28, 28, 2)), MediaError, "C in 1, 3, 4"),
        (np.zeros((0, 28)), MediaError, "no pixels"),
        (np.full((28, 28), np.nan), MediaError, "NaN"),
        (np.full((28, 28), 1.5), MediaError, r"\[0, 1\]"),
        (np.full((28, 28), 300), MediaError, "0..255"),
        (np.full((28, 28), -1), MediaError, "0..255"),
        (np.zeros((28, 28), dtype=bool), MediaError, "not bool"),
        (np.array([["a"] * 28] * 28), MediaError, "integers 0..255 or floats"),
        (np.zeros((2000, 2000), dtype=np.uint8), MediaTooLarge, "pixels"),
    ],
    ids=["rank", "channels", "empty", "nan", "float-range", "int-high", "int-low", "bool", "str", "too-big"],
)
def test_bad_image_arrays(array: np.ndarray, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message):
        image_from_array(array, max_pixels=1_000_000)


def test_mutated_images_only_raise_media_errors() -> None:
    """A small seeded fuzz: broken bytes are a client error, never a crash."""
    rng = np.random.default_rng(0)
    seeds = [
        _png(),
        image_bytes(Image.fromarray(PATTERN).convert("RGB"), "JPEG"),
        image_bytes(Image.fromarray(PATTERN).convert("P"), "GIF"),
    ]
    decoded = 0
    for data in seeds:
        for _ in range(60):
            broken = bytearray(data)
            for pos in rng.integers(0, len(broken), rng.integers(1, 12)):
                broken[pos] = rng.integers(0, 256)
            try:
                decoded += decode_image(bytes(broken)).shape == (28, 28)
            except MediaError:
                pass
    assert decoded > 0  # some mutations leave a decodable image, which must still be 28x28


# ---------------------------------------------------------------- audio: formats, rates, channels

FORMATS = [
    ("WAV", "PCM_U8", 0.05),
    ("WAV", "PCM_16", 0.01),
    ("WAV", "PCM_24", 0.01),
    ("WAV", "PCM_32", 0.01),
    ("WAV", "FLOAT", 0.01),
    ("WAV", "DOUBLE", 0.01),
    ("FLAC", "PCM_16", 0.01),
    ("FLAC", "PCM_24", 0.01),
    ("OGG", "VORBIS", 0.05),
]


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize(("fmt", "subtype", "tol"), FORMATS, ids=[f"{f}-{s}" for f, s, _ in FORMATS])
def test_audio_formats_and_rates(fmt: str, subtype: str, tol: float, rate: int) -> None:
    """A 0.5 s 440 Hz tone comes back centred, at 16 kHz, with its pitch and level kept."""
    out = decode_audio(audio_bytes(tone(0.5, rate), rate, fmt, subtype))
    assert out.dtype == np.float32 and out.shape == (16000,)
    assert np.abs(out[:3000]).max() < tol and np.abs(out[-3000:]).max() < tol  # zero padding both sides
    middle = out[5000:11000]
    assert abs(dominant_frequency(middle, 16000) - 440) < 5
    assert abs(np.sqrt(np.mean(middle**2)) - 0.5 / np.sqrt(2)) < 0.02 + tol


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(channels: int) -> None:
    wave = np.zeros((16000, channels))
    wave[:, 0] = tone(1.0, 16000, amplitude=0.6)  # one live channel, the rest silent
    out = decode_audio(audio_bytes(wave, 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(out, wave[:, 0] / channels, atol=1e-6)
    assert audio_from_array(wave, 16000) == pytest.approx(out, abs=1e-6)


def test_exact_window_is_unchanged() -> None:
    wave = np.random.default_rng(0).uniform(-0.9, 0.9, 16000).astype(np.float32)
    np.testing.assert_array_equal(decode_audio(audio_bytes(wave, 16000, "WAV", "FLOAT")), wave)


def test_short_clip_is_centred() -> None:
    wave = tone(0.25, 16000).astype(np.float32)  # 4000 samples
    out = decode_audio(audio_bytes(wave, 16000, "WAV", "FLOAT"))
    np.testing.assert_array_equal(out[6000:10000], wave)
    assert not out[:6000].any() and not out[10000:].any()


@pytest.mark.parametrize("rate", [16000, 44100])
def test_long_clip_keeps_the_most_energetic_window(rate: int) -> None:
    """3 s of faint noise with a 0.3 s burst at 2.2 s: the window must hold the whole burst."""
    rng = np.random.default_rng(1)
    wave = rng.normal(0, 0.01, round(3 * rate))
    start = round(2.2 * rate)
    burst = tone(0.3, rate, freq=1000, amplitude=0.8)
    wave[start : start + len(burst)] += burst
    out = decode_audio(audio_bytes(wave, rate, "WAV", "FLOAT"))
    loud = np.flatnonzero(np.abs(out) > 0.5)
    assert loud[-1] - loud[0] > 0.29 * 16000  # all 0.3 s of the burst is inside the window
    assert abs(dominant_frequency(out, 16000) - 1000) < 5


# ---------------------------------------------------------------- audio: bad payloads


def _wav_with(value: float) -> bytes:
    wave = tone(0.1, 16000)
    wave[100] = value
    return audio_bytes(wave, 16000, "WAV", "FLOAT")


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", MediaError, "empty"),
        (b"RIFF\x00\x00", MediaError, "could not be decoded"),
        (image_bytes(Image.fromarray(PATTERN)), MediaError, "could not be decoded"),
        (audio_bytes(tone(1.0, 16000), 16000)[:30], MediaError, "could not be decoded"),
        (audio_bytes(np.zeros(0), 16000), MediaError, "no samples"),
        (_wav_with(np.nan), MediaError, "NaN or infinite"),
        (_wav_with(np.inf), MediaError, "NaN or infinite"),
        (audio_bytes(tone(0.1, 500), 500), MediaError, "sample rate 500 Hz"),
        (audio_bytes(tone(2.5, 8000), 8000), MediaTooLarge, "lasts 2.5 s, more than the limit of 2 s"),
    ],
    ids=["empty", "truncated-header", "png", "header-only", "zero-length", "nan", "inf", "rate", "too-long"],
)
def test_bad_audio_bytes(data: bytes, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        decode_audio(data, max_seconds=2.0)
    assert info.value.modality == "audio"


@pytest.mark.parametrize(
    ("array", "rate", "error", "message"),
    [
        (np.zeros((10, 2, 2)), 16000, MediaError, r"\[N\] or \[N, channels\]"),
        (np.zeros((2, 16000)), 16000, MediaError, "transpose a channels-first array"),
        (np.zeros(0), 16000, MediaError, "no samples"),
        (np.zeros((100, 0)), 16000, MediaError, "no samples"),
        (np.full(100, np.nan), 16000, MediaError, "NaN or infinite"),
        (np.full(100, 1e300), 16000, MediaError, "NaN or infinite"),
        (np.array([0, 20000, -20000], dtype=np.int16), 16000, MediaError, "divide int16 PCM by 32768"),
        (np.zeros(100, dtype=bool), 16000, MediaError, "numbers"),
        (np.array(["a", "b"]), 16000, MediaError, "numbers"),
        (np.zeros(100), "16000", MediaError, "number of Hz"),
        (np.zeros(100), 16000.5, MediaError, "whole number"),
        (np.zeros(100), 10**7, MediaError, "sample rate"),
        (np.zeros(3 * 16000), 16000, MediaTooLarge, "lasts 3.0 s"),
    ],
    ids=[
        "rank", "channels-first", "empty", "no-channels", "nan", "overflow", "int16-pcm", "bool", "str",
        "rate-str", "rate-fraction", "rate-high", "too-long",
    ],
)  # fmt: skip
def test_bad_audio_arrays(array: np.ndarray, rate: object, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message):
        audio_from_array(array, rate, max_seconds=2.0)  # type: ignore[arg-type]


def test_audio_arrays_accept_small_ints_and_clip_floats() -> None:
    ints = audio_from_array(np.array([0, 1, -1, 0] * 4000), 16000)
    assert ints.dtype == np.float32 and set(np.unique(ints)) == {-1.0, 0.0, 1.0}
    assert audio_from_array(np.full(16000, 3.0), 16000.0).max() == 1.0  # type: ignore[arg-type]


def test_mutated_audio_only_raises_media_errors() -> None:
    rng = np.random.default_rng(0)
    wave = tone(0.3, 22050)
    seeds = [
        audio_bytes(wave, 22050, f, s) for f, s in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"))
    ]
    for data in seeds:
        for _ in range(40):
            broken = bytearray(data[: rng.integers(1, len(data) + 1)])
            for pos in rng.integers(0, len(broken), rng.integers(0, 8)):
                broken[pos] = rng.integers(0, 256)
            try:
                assert decode_audio(bytes(broken)).shape == (16000,)
            except MediaError:
                pass


# ---------------------------------------------------------------- text


def test_text_is_nfc_utf8_zero_padded() -> None:
    out = encode_text("  cafe\u0301 ")  # decomposed é, surrounding blanks
    assert out.dtype == np.uint8 and out.shape == (64,)
    assert bytes(out[:5]) == "café".encode() and not out[5:].any()  # é is one code point, 2 bytes
    assert decode_text(out) == "café"


@pytest.mark.parametrize(("char", "width"), [("é", 2), ("€", 3), ("😀", 4)])
def test_truncation_never_splits_a_character(char: str, width: int) -> None:
    out = encode_text("a" + char * 40)  # 1 + 40 * width bytes, more than 64
    kept = (64 - 1) // width
    assert decode_text(out) == "a" + char * kept
    assert not out[1 + kept * width :].any()


def test_text_max_bytes_is_a_parameter() -> None:
    assert encode_text("seven", max_bytes=8).tolist() == list(b"seven\0\0\0")


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", MediaError, "is empty"),
        (" \t\n", MediaError, "is empty"),
        (b"seven", MediaError, "must be a string, not bytes"),
        (None, MediaError, "must be a string, not NoneType"),
        ("se\x00ven", MediaError, "NUL"),
        ("x\ud800y", MediaError, "surrogate"),
        ("x" * 101, MediaTooLarge, "101 characters, more than the limit of 100"),
    ],
    ids=["empty", "blank", "bytes", "none", "nul", "surrogate", "too-long"],
)
def test_bad_text(text: object, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        encode_text(text, max_chars=100)  # type: ignore[arg-type]
    assert info.value.modality == "text"
