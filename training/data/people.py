"""Digits "as people make them": the MNIST digit redrawn the way a user would send it.

A canvas drawing or a scan is dark ink on a light page, the digit is rarely centred or
MNIST-sized, the page is bigger than 28x28 and often a JPEG. These variants are encoded
bytes, so a test tier built from them goes through the same decoder as a served request
(:func:`app.media.decode_image`), normalisation included.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CANVAS_SIDES = (28, 64, 140, 280, 600)
"""Page sizes a variant is drawn on (square, in pixels)."""
DIGIT_SHARE = (0.15, 0.9)
"""The digit's 28x28 frame as a share of the page side (small in a corner .. filling it)."""
JPEG_SHARE = 0.3
"""Share of variants saved as JPEG (quality 60..95) instead of PNG."""


def people_variant(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One variant of a uint8 ``[28, 28]`` white-on-black digit: encoded image bytes.

    Dark ink on a light page (a random paper grey 200..255, ink 0..60), the digit scaled to a
    random share of a random page and placed anywhere on it, saved as PNG or JPEG.
    """
    arr = np.asarray(digit)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise ValueError(f"digit must be uint8 [H, W], got {arr.dtype} {list(arr.shape)}")
    page_side = int(rng.choice(CANVAS_SIDES))
    share = rng.uniform(*DIGIT_SHARE) if page_side > arr.shape[0] else 1.0
    side = max(arr.shape[0], round(page_side * share))
    ink = Image.fromarray(arr, mode="L").resize((side, side), Image.Resampling.BICUBIC)
    paper, pen = float(rng.uniform(200, 255)), float(rng.uniform(0, 60))
    alpha = np.asarray(ink, dtype=np.float32) / 255.0
    top, left = (int(rng.integers(0, page_side - side + 1)) for _ in range(2))
    page = np.full((page_side, page_side), paper, dtype=np.float32)
    window = page[top : top + side, left : left + side]
    page[top : top + side, left : left + side] = window * (1 - alpha) + pen * alpha
    out = io.BytesIO()
    image = Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8), mode="L")
    if rng.random() < JPEG_SHARE:
        image.save(out, format="JPEG", quality=int(rng.integers(60, 96)))
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def people_variants(digits: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    """:func:`people_variant` of every digit in a uint8 ``[N, 28, 28]`` array, in order."""
    return [people_variant(d, rng) for d in np.asarray(digits)]
