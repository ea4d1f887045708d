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
CORE_THRESHOLD = 0.5
"""The digit's core: faint noise never reaches it, so it decides whether a digit is already placed."""
MAX_INK_FRACTION = 0.5
"""More ink than this share of the picture is noise or a filled page, not a digit."""
MIN_COMPONENT = 0.1
"""Ink blobs smaller than this fraction of the largest one are specks and are ignored."""
FLAT_BACKGROUND = 8.0
"""A background at most this grey (after polarity) is MNIST's black: no levelling needed."""
LIGHT_BORDER = 0.7
"""Share of the border that must be on the light side of the picture's range to call it paper."""
MAX_BORDER_INK = 0.05
"""Ink on more than this share of 3 or 4 of the border's sides means a noisy background, not a
digit (a digit pushed into a corner touches two sides): no clear ink region."""


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
    grey = np.asarray(small, dtype=np.float32)  # read once: each read of a Pillow image copies it
    if _light_paper(grey):
        img, small = ImageOps.invert(img), ImageOps.invert(small)
        grey = np.asarray(small, dtype=np.float32)
    background = _median(_border(grey))
    ink = grey - background
    box = _ink_box(ink)
    if box is None:
        return fit_square(img, size)
    if img.size == (size, size) and background <= FLAT_BACKGROUND and _is_mnist_layout(ink, box, size):
        return np.asarray(img, dtype=np.uint8).copy()  # already as MNIST makes it: a fixed point
    box = _to_full(box, small.size, img.size)
    if max(img.size[0] / small.size[0], img.size[1] / small.size[1]) > 1.5:
        box = _refine(img, box, background, size)  # a tight box from a second look at the crop only
    return _place(img.crop(box), background, size)


def _is_mnist_layout(ink: np.ndarray, box: tuple[int, int, int, int], size: int) -> bool:
    """True when the digit's core box is MNIST's and its mass is at the centre, each within a pixel.

    Such an image is left exactly as it is, so normalising is idempotent and data already laid
    out like MNIST (noisy training images included) survives a round trip through image files.
    Either the ink ``box`` or the core's box (CORE_THRESHOLD) may match: faint noise next to a
    stroke widens the first, faint stroke tips shorten the second.
    """
    contrast = float(ink.max(initial=0.0))
    core = _box_without_specks(ink > CORE_THRESHOLD * contrast)
    side = round(DIGIT_BOX * size)
    if all(abs(max(r - left, b - top) - side) > 1 for left, top, r, b in (box, core)):
        return False
    mass_map = np.clip(ink, 0.0, None).astype(np.float64)  # noise is spread evenly: it pulls to the centre
    mass = float(mass_map.sum())
    ys, xs = np.indices(mass_map.shape)
    cy, cx = float((mass_map * ys).sum()) / mass, float((mass_map * xs).sum()) / mass
    return abs(size / 2 - cy) <= 1.0 and abs(size / 2 - cx) <= 1.0  # MNIST's own spread, noise's pull


def fit_square(img: Image.Image, size: int) -> np.ndarray:
    """Scale to fit ``size x size`` (aspect kept, anti-aliased) and pad with black."""
    if img.size != (size, size):
        img = ImageOps.pad(img, (size, size), method=Image.Resampling.LANCZOS, color=0)
    return np.asarray(img, dtype=np.uint8).copy()


def _light_paper(a: np.ndarray) -> bool:
    """True when the picture is dark ink on light paper: its border is consistently the light side.

    "Light" is relative to the picture's own range (a dim photo's grey paper counts), and the
    border must agree (LIGHT_BORDER of it), so a noisy border, light and dark in turns, never
    flips a picture. A picture without contrast is paper when it is lighter than mid-grey.
    """
    border = _border(a)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < MIN_CONTRAST:
        return _median(border) > 127.5
    return float((border > (lo + hi) / 2).mean()) >= LIGHT_BORDER


def _median(values: np.ndarray) -> float:
    """``float(np.median(values))`` for a non-empty 1-D array without NaN, minus its generic overhead
    (about 15 us of a 20 us call on a digit's border): the middle value, or the mean of the two
    middle ones computed in the array's own dtype, as numpy does."""
    ranked = np.sort(values)
    mid = ranked.size // 2
    return float(ranked[mid] if ranked.size % 2 else (ranked[mid - 1] + ranked[mid]) / 2)


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


def _noisy_border(mask: np.ndarray) -> bool:
    """True when 3 or 4 sides of ``mask``'s border carry ink (noise is everywhere, a digit is not)."""
    t = max(1, min(mask.shape) // 56)
    sides = (mask[:t], mask[-t:], mask[:, :t], mask[:, -t:])
    return sum(float(side.mean()) > MAX_BORDER_INK for side in sides) >= 3


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` (exclusive) of the ink in ``ink`` (background-subtracted), or None."""
    contrast = float(ink.max(initial=0.0))
    if contrast < MIN_CONTRAST:
        return None
    mask = ink > INK_THRESHOLD * contrast
    if mask.mean() > MAX_INK_FRACTION or _noisy_border(mask):
        return None
    return _box_without_specks(mask)


def _box_without_specks(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box of ``mask``'s 8-connected blobs of at least MIN_COMPONENT of the largest's size.

    Labels runs of ink per row (union-find over runs that touch the previous row's), which
    is fast in Python: a 28x28 digit has about a hundred runs, not hundreds of pixels.
    """
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = (a.tolist() for a in np.nonzero(edges == 1))
    ends = np.nonzero(edges == -1)[1].tolist()  # exclusive; same row-major order as the starts
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    above_lo = above_hi = 0  # runs of the row above the current one: [above_lo, above_hi)
    for i, row in enumerate(rows):
        if i == 0 or row != rows[i - 1]:
            above_lo, above_hi = (above_hi, i) if i and rows[i - 1] == row - 1 else (i, i)
        for j in range(above_lo, above_hi):
            if starts[j] <= ends[i] and starts[i] <= ends[j]:  # touching, diagonals included
                parent[find(j)] = find(i)
    roots = [find(i) for i in range(len(rows))]
    size = dict.fromkeys(roots, 0)
    for root, a, b in zip(roots, starts, ends, strict=True):
        size[root] += b - a
    least = MIN_COMPONENT * max(size.values())
    kept = [i for i, root in enumerate(roots) if size[root] >= least]
    return (
        min(starts[i] for i in kept),
        rows[kept[0]],
        max(ends[i] for i in kept),
        rows[kept[-1]] + 1,
    )


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
    ink = _scaled(crop, background, side, size)
    mask = ink > INK_THRESHOLD * 255.0
    if mask.any():
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 < side - 1:
            # the crop's margin (a coarse box, soft edges) shrank the digit: once more, tighter
            fy, fx = crop.size[1] / ink.shape[0], crop.size[0] / ink.shape[1]
            left, top = int(cols[0] * fx), int(rows[0] * fy)
            right, bottom = int(np.ceil((cols[-1] + 1) * fx)), int(np.ceil((rows[-1] + 1) * fy))
            ink = _scaled(crop.crop((left, top, right, bottom)), background, side, size)
    ys, xs = np.indices(ink.shape)
    mass = float(ink.sum())
    if mass:
        cy, cx = float((ink * ys).sum()) / mass, float((ink * xs).sum()) / mass
    else:
        cy, cx = ink.shape[0] / 2, ink.shape[1] / 2
    # MNIST's centre of mass sits at pixel index size/2 (14.0 at 28, measured on the test set)
    oy = int(np.clip(round(size / 2 - cy), 0, size - ink.shape[0]))
    ox = int(np.clip(round(size / 2 - cx), 0, size - ink.shape[1]))
    out = np.zeros((size, size), dtype=np.uint8)
    out[oy : oy + ink.shape[0], ox : ox + ink.shape[1]] = ink.astype(np.uint8)
    return out


def _scaled(crop: Image.Image, background: float, side: int, size: int) -> np.ndarray:
    """``crop`` resized so its longer side is ``side``, background removed, ink stretched to 255."""
    w, h = crop.size
    if abs(max(w, h) - side) > 1 or max(w, h) > size:  # within a pixel: resampling would only blur
        scale = side / max(w, h)
        crop = crop.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    ink = np.clip(np.asarray(crop, dtype=np.float32) - background, 0.0, None)
    top = float(ink.max(initial=0.0))
    if top > 0:
        ink *= 255.0 / top
    return np.rint(np.clip(ink, 0.0, 255.0))
