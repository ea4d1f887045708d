"""Make a digit image look like MNIST: light ink on black, cropped, 20 px box, centred by mass.

MNIST digits were size-normalised into a 20x20 box (aspect kept, anti-aliased) and placed
in 28x28 so that their centre of mass sits at the centre. A user's image is rarely like
that: a canvas drawing or a scan is dark ink on white, a photo has a grey background, and
the digit may be small and anywhere on a big page. Redoing MNIST's own normalisation on
every input (in serving and in training, through :mod:`app.media`) closes that gap.

Each step is conservative: when no clear ink region is found (a blank page, pure noise, an
image that is all ink) the picture is only polarity-fixed and fitted, never cropped to a
guess. On a real MNIST digit the result is (nearly) the digit itself.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from PIL import Image, ImageOps

DIGIT_BOX = 20 / 28
"""The ink box's longer side as a fraction of the output side (MNIST: 20 px of 28)."""
ANALYSIS_SIDE = 4
"""Ink is located on a copy at most this many times the output side (cheap, and specks vanish)."""
MIN_CONTRAST = 40.0
"""Ink must stand this many grey levels (of 255) above the background, or there is no clear ink."""
INK_THRESHOLD = 0.2
"""A pixel is ink above this fraction of the contrast (MNIST's 20x20 box is exact at this level)."""
MAX_INK_FRACTION = 0.5
"""More ink than this share of the picture is noise or a filled page, not a digit."""
MIN_COMPONENT = 0.1
"""Ink blobs smaller than this fraction of the largest one are specks and are ignored."""
MAX_BORDER_INK = 0.08
"""More ink than this share of the border ring means a noisy background: no clear ink region."""


def normalize_digit(gray: np.ndarray, size: int = 28) -> np.ndarray:
    """Normalise a grayscale digit image of any size and polarity into MNIST's layout.

    Args:
        gray: uint8 ``[H, W]``: dark-on-light or light-on-dark, anywhere in the picture.
        size: the output side (28 for MNIST).

    Returns:
        uint8 ``[size, size]``: light ink on black, ink box's longer side ``20/28 * size``,
        centre of mass at the centre. Without a clear ink region: polarity-fixed and fitted.
    """
    arr = np.asarray(gray)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.size == 0:
        raise ValueError(f"normalize_digit needs a non-empty uint8 [H, W] array, got {arr.dtype} {arr.shape}")
    return normalize_image(Image.fromarray(arr, mode="L"), size)


def normalize_image(img: Image.Image, size: int) -> np.ndarray:
    """:func:`normalize_digit` on a Pillow ``L`` image (the decoder's path: no extra copy)."""
    small = _analysis_copy(img, size)
    border = _border(np.asarray(small, dtype=np.float32))
    invert = float(np.median(border)) > 127.5
    if invert:
        img, small = ImageOps.invert(img), ImageOps.invert(small)
    background = float(np.median(_border(np.asarray(small, dtype=np.float32))))
    box = _ink_box(np.asarray(small, dtype=np.float32) - background)
    if box is None:
        return fit_square(img, size)
    box = _to_full(box, small.size, img.size)
    if max(img.size[0] / small.size[0], img.size[1] / small.size[1]) > 1.5:
        box = _refine(img, box, background, size)  # a tight box from a second look at the crop only
    return _place(img.crop(box), background, size)


def fit_square(img: Image.Image, size: int) -> np.ndarray:
    """Scale to fit ``size x size`` (aspect kept, anti-aliased) and pad with black."""
    if img.size != (size, size):
        img = ImageOps.pad(img, (size, size), method=Image.Resampling.LANCZOS, color=0)
    return np.asarray(img, dtype=np.uint8).copy()


def _analysis_copy(img: Image.Image, size: int) -> Image.Image:
    limit = ANALYSIS_SIDE * size
    if max(img.size) <= limit:
        return img
    scale = limit / max(img.size)
    target = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    return img.resize(target, Image.Resampling.BOX)  # area average: thin strokes fade, never vanish


def _border(a: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, 1/56 of the shorter side thick (1 px at 28)."""
    t = max(1, min(a.shape) // 56)
    if min(a.shape) <= 2 * t:
        return a.ravel()
    return np.concatenate([a[:t].ravel(), a[-t:].ravel(), a[t:-t, :t].ravel(), a[t:-t, -t:].ravel()])


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` (exclusive) of the ink in ``ink`` (background-subtracted), or None."""
    contrast = float(ink.max(initial=0.0))
    if contrast < MIN_CONTRAST:
        return None
    mask = ink > INK_THRESHOLD * contrast
    if mask.mean() > MAX_INK_FRACTION or _border(mask).mean() > MAX_BORDER_INK:
        return None
    keep = _without_specks(mask)
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` keeping only 8-connected blobs of at least MIN_COMPONENT of the largest blob's size."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    h, w = mask.shape
    sizes = [0]
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        label = len(sizes)
        labels[start] = label
        queue, count = deque([start]), 0
        while queue:
            y, x = queue.popleft()
            count += 1
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = label
                        queue.append((ny, nx))
        sizes.append(count)
    counts = np.asarray(sizes)
    return (counts >= max(1.0, MIN_COMPONENT * counts.max()))[labels] & mask


def _to_full(
    box: tuple[int, int, int, int], small: tuple[int, int], full: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Map a box on the analysis copy to the full picture, one analysis pixel wider each side."""
    if small == full:
        return box
    sx, sy = full[0] / small[0], full[1] / small[1]
    left, top, right, bottom = box
    return (
        max(0, int((left - 1) * sx)),
        max(0, int((top - 1) * sy)),
        min(full[0], int(np.ceil((right + 1) * sx))),
        min(full[1], int(np.ceil((bottom + 1) * sy))),
    )


def _refine(
    img: Image.Image, box: tuple[int, int, int, int], background: float, size: int
) -> tuple[int, int, int, int]:
    """A small digit on a big page: find the ink box again at a finer scale inside ``box``."""
    crop = img.crop(box)
    small = _analysis_copy(crop, size)
    inner = _ink_box(np.asarray(small, dtype=np.float32) - background)
    if inner is None:
        return box
    inner = _to_full(inner, small.size, crop.size)
    return (box[0] + inner[0], box[1] + inner[1], box[0] + inner[2], box[1] + inner[3])


def _place(crop: Image.Image, background: float, size: int) -> np.ndarray:
    """Scale the ink box to MNIST's box, stretch ink to full white, centre it by mass."""
    side = max(1, round(DIGIT_BOX * size))
    w, h = crop.size
    scale = side / max(w, h)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if target != crop.size:
        crop = crop.resize(target, Image.Resampling.LANCZOS)
    ink = np.clip(np.asarray(crop, dtype=np.float32) - background, 0.0, None)
    top = float(ink.max(initial=0.0))
    if top > 0:
        ink *= 255.0 / top
    ink = np.rint(np.clip(ink, 0.0, 255.0))
    ys, xs = np.indices(ink.shape)
    mass = float(ink.sum())
    cy, cx = (float((ink * ys).sum()) / mass, float((ink * xs).sum()) / mass) if mass else (h / 2, w / 2)
    # MNIST's centre of mass sits at pixel index size/2 (14.0 at 28, measured on the test set)
    oy = int(np.clip(round(size / 2 - cy), 0, size - ink.shape[0]))
    ox = int(np.clip(round(size / 2 - cx), 0, size - ink.shape[1]))
    out = np.zeros((size, size), dtype=np.uint8)
    out[oy : oy + ink.shape[0], ox : ox + ink.shape[1]] = ink.astype(np.uint8)
    return out
