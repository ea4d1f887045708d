"""Digits "as people make them": encoded pages that the decoder turns back into the digit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.media import decode_image
from training.data.people import people_variants


def _digits(n: int) -> np.ndarray:
    """MNIST-like white-on-black ring and bar digits with a 20 px box, centred in 28x28."""
    out = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        img = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(img)
        if i % 2:
            draw.ellipse((8, 4, 20, 24), outline=255, width=3)
        else:
            draw.line((14, 4, 14, 24), fill=255, width=3)
        out[i] = np.asarray(img)
    return out


def test_variants_are_dark_on_light_pages_that_decode_back_to_the_digit() -> None:
    digits = _digits(20)
    variants = people_variants(digits, np.random.default_rng(0))
    assert len(variants) == len(digits)
    formats = set()
    for digit, data in zip(digits, variants, strict=True):
        page = Image.open(io.BytesIO(data))
        formats.add(page.format)
        assert np.median(np.asarray(page.convert("L"))) > 150  # light paper
        back = decode_image(data).astype(float)
        assert np.corrcoef(back.ravel(), digit.ravel().astype(float))[0, 1] > 0.8
    assert formats == {"PNG", "JPEG"}


def test_variants_are_reproducible_from_the_seed() -> None:
    digits = _digits(4)
    first = people_variants(digits, np.random.default_rng(7))
    assert first == people_variants(digits, np.random.default_rng(7))


def test_bad_digits_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        people_variants(np.zeros((2, 28, 28), np.float32), np.random.default_rng(0))
