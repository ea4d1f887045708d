"""Digit normalisation in the decoder: images as people make them become MNIST-like.

The reference digits are made here with MNIST's own recipe (ink box scaled to 20x20, aspect
kept, anti-aliased, centre of mass at the centre of 28x28), independently of app.media.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.inputs import Limits, RawInput, decode_samples
from app.manifest import DecodeParams, Manifest
from app.media import decode_image, image_from_array, normalize_digit
from tests.media_fixtures import image_bytes

ROOT = Path(__file__).resolve().parents[2]
STROKES = {
    "seven": [(20, 20), (80, 20), (45, 90)],
    "four": [(60, 90), (60, 10), (15, 60), (80, 60)],
    "two": [(20, 30), (40, 12), (70, 20), (70, 45), (20, 90), (80, 90)],
}


def drawing(shape: str, side: int, box: tuple[int, int, int, int], ink: int, paper: int) -> np.ndarray:
    """``shape``'s strokes (on a 100x100 grid) drawn thick into ``box`` of a ``side`` square page."""
    page = Image.new("L", (side, side), paper)
    left, top, right, bottom = box
    scale = (right - left) / 100
    points = [(left + x * scale, top + y * scale) for x, y in STROKES[shape]]
    ImageDraw.Draw(page).line(points, fill=ink, width=max(1, round(12 * scale)), joint="curve")
    return np.asarray(page)


def mnist_recipe(white_on_black: np.ndarray) -> np.ndarray:
    """MNIST's normalisation, written out independently: 20 px box, centre of mass at (14, 14)."""
    rows, cols = np.nonzero(white_on_black)
    crop = Image.fromarray(white_on_black[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    scale = 20 / max(crop.size)
    width, height = max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))
    crop = crop.resize((width, height), Image.Resampling.LANCZOS)
    ink = np.asarray(crop, dtype=np.float64)
    ys, xs = np.indices(ink.shape)
    cy, cx = (ink * ys).sum() / ink.sum(), (ink * xs).sum() / ink.sum()
    oy, ox = round(14 - cy), round(14 - cx)
    out = np.zeros((28, 28), dtype=np.uint8)
    out[oy : oy + ink.shape[0], ox : ox + ink.shape[1]] = np.asarray(crop)
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def reference(shape: str) -> np.ndarray:
    return mnist_recipe(drawing(shape, 280, (40, 40, 240, 240), ink=255, paper=0))


def ink_box_side(img: np.ndarray) -> int:
    rows, cols = np.nonzero(img > 50)
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)


@pytest.mark.parametrize("shape", sorted(STROKES))
def test_mnist_made_digits_are_left_nearly_unchanged(shape: str) -> None:
    digit = reference(shape)
    out = normalize_digit(digit)
    assert np.abs(out.astype(int) - digit).mean() < 2.0
    np.testing.assert_array_equal(normalize_digit(out), out)  # normalising twice changes nothing


@pytest.mark.parametrize("shape", sorted(STROKES))
def test_mnist_laid_out_digits_are_fixed_points_inverted_or_lightly_noisy(shape: str) -> None:
    digit = reference(shape)
    np.testing.assert_array_equal(normalize_digit(255 - digit), digit)
    rng = np.random.default_rng(0)
    noisy = np.clip(digit + rng.normal(0.0, 20.0, digit.shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(normalize_digit(noisy), noisy)  # not cropped, not levelled


@pytest.mark.parametrize("shape", sorted(STROKES))
def test_an_off_centre_digit_in_28x28_is_moved_back_exactly(shape: str) -> None:
    digit = reference(shape)
    rows, cols = np.nonzero(digit)
    for dy, dx in ((-rows.min(), -cols.min()), (27 - rows.max(), 27 - cols.max())):  # into corners
        moved = np.roll(digit, (dy, dx), axis=(0, 1))  # no wrap: the shift stays inside the frame
        np.testing.assert_array_equal(normalize_digit(moved), digit)


@pytest.mark.parametrize("shape", sorted(STROKES))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_black_on_white_canvas_drawing_matches_the_mnist_digit(shape: str, fmt: str) -> None:
    canvas = drawing(shape, 600, (330, 40, 530, 240), ink=20, paper=245)  # off-centre, top right
    out = decode_image(image_bytes(Image.fromarray(canvas), fmt, quality=85))
    assert correlation(out, reference(shape)) > 0.95
    assert out[0].max() == 0 and out[:, 0].max() == 0  # black background
    assert ink_box_side(out) in (19, 20, 21)


def test_small_digit_in_the_corner_of_a_huge_canvas_is_found() -> None:
    canvas = drawing("four", 3000, (2780, 2780, 2980, 2980), ink=0, paper=255)  # ~1/15 of the side
    out = decode_image(image_bytes(Image.fromarray(canvas)))
    assert correlation(out, reference("four")) > 0.9
    assert ink_box_side(out) in (19, 20, 21)


def test_dark_strokes_on_a_transparent_canvas_are_kept() -> None:
    ink = drawing("seven", 300, (50, 50, 250, 250), ink=255, paper=0)
    rgba = np.zeros((300, 300, 4), dtype=np.uint8)
    rgba[..., 3] = ink  # black pen, alpha = coverage; the background fully transparent
    out = decode_image(image_bytes(Image.fromarray(rgba, mode="RGBA")))
    assert correlation(out, reference("seven")) > 0.95
    np.testing.assert_array_equal(image_from_array(rgba), out)


def test_photo_like_grey_page_is_levelled() -> None:
    canvas = drawing("two", 200, (30, 60, 130, 160), ink=70, paper=170)  # dim light, weak contrast
    out = decode_image(image_bytes(Image.fromarray(canvas)))
    assert out.max() == 255 and out[0].max() == 0
    assert correlation(out, reference("two")) > 0.95


@pytest.mark.parametrize(
    "gray",
    [
        np.zeros((28, 28), np.uint8),
        np.full((28, 28), 255, np.uint8),
        np.full((40, 30), 128, np.uint8),
        np.random.default_rng(0).integers(0, 120, (28, 28), dtype=np.uint8),
        np.random.default_rng(1).integers(135, 256, (500, 700), dtype=np.uint8),
        np.zeros((1, 1), np.uint8),
        np.full((1, 300), 255, np.uint8),
    ],
    ids=["black", "white", "grey", "dark-noise", "light-noise-large", "1x1", "1x300"],
)
def test_no_clear_ink_only_fixes_polarity_and_fits(gray: np.ndarray) -> None:
    out = normalize_digit(gray)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    uniform = gray.max() - gray.min() < 40
    paper = uniform and np.median(gray) > 127.5  # a noisy picture is never inverted: no clear paper
    fitted = image_from_array(255 - gray if paper else gray, normalize=False)
    np.testing.assert_array_equal(out, fitted)


def test_heavy_noise_and_occlusion_do_not_crash_or_crop() -> None:
    digit = reference("seven")
    rng = np.random.default_rng(0)
    for sigma in (80.0, 150.0, 255.0):  # as training.data.noise.image_noise at levels 0.3 .. 1
        noisy = np.clip(digit + rng.normal(0.0, sigma, digit.shape), 0, 255).astype(np.uint8)
        noisy[5:20, 8:23] = rng.integers(0, 256)  # an occluding square of a random grey
        np.testing.assert_array_equal(normalize_digit(noisy), noisy)  # a noisy border: no crop


def test_flag_off_keeps_the_picture_as_sent() -> None:
    canvas = drawing("seven", 56, (30, 2, 54, 26), ink=0, paper=255)
    as_sent = decode_image(image_bytes(Image.fromarray(canvas)), normalize=False)
    assert as_sent[14, 0] == 255  # still white paper
    assert correlation(as_sent, reference("seven")) < 0.5


def test_the_manifest_flag_reaches_the_decoder() -> None:
    manifest = Manifest.model_validate_json((ROOT / "models/image_only/1/manifest.json").read_text())
    canvas = image_bytes(Image.fromarray(drawing("four", 120, (10, 10, 60, 60), ink=0, paper=255)))
    limits = Limits(max_image_pixels=10**6, max_audio_seconds=10.0, max_text_chars=100)
    sample = {"image": RawInput(kind="bytes", value=canvas, field="image")}
    results = {}
    for flag in (True, False):
        m = manifest.model_copy(update={"decode": DecodeParams(image_normalize=flag)})
        results[flag] = decode_samples([sample], m, limits)[0]["image"]
    np.testing.assert_array_equal(results[True], decode_image(canvas))
    np.testing.assert_array_equal(results[False], decode_image(canvas, normalize=False))
    assert DecodeParams().image_normalize is True


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        normalize_digit(np.zeros((28, 28), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        normalize_digit(np.zeros((0, 28), np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_border_median_is_numpys_for_odd_and_even_sizes(dtype: type) -> None:
    from app.media.digit import _median

    rng = np.random.default_rng(7)
    for size in (1, 2, 3, 4, 27, 108, 109):
        levels = rng.integers(0, 256, size).astype(dtype)  # a border: grey levels
        reals = (rng.random(size) * 1000).astype(dtype)  # halves of odd sums round as numpy rounds
        assert _median(levels) == float(np.median(levels))
        assert _median(reals) == float(np.median(reals))
