"""Corruptions for each modality, with one knob: ``level`` in [0, 1] (0 = unchanged).

The built-in data set uses these very functions for its own noise, and evaluation uses them
again for robustness curves, so "noise level 0.4" means the same thing in both places.

Each function draws its randomness *before* applying the level (the same standard-normal
field, the same occlusion centre, the same per-character dice), so with equally seeded
generators a higher level corrupts a superset of what a lower one did: curves are monotone
by construction, not only on average.

``level`` is a float or an array with one level per sample (the data set gives each sample
its own level, so some samples are clean in one modality and poor in another).
"""

from __future__ import annotations

import string

import numpy as np

from app.media import DEFAULT_MAX_BYTES, encode_text

IMAGE_SIGMA_MAX = 255.0
"""Gaussian pixel noise standard deviation at level 1 (pixels are 0..255)."""
IMAGE_OCCLUSION_MAX = 0.6
"""Side of the occluding square at level 1, as a fraction of the image side."""
AUDIO_SNR_DB = (30.0, -30.0)
"""Signal-to-noise ratio in dB just above level 0 and at level 1; linear in dB in between."""
TEXT_ALPHABET = string.ascii_lowercase
"""Characters that substitutions and insertions draw from."""
TEXT_OPS = ("substitute", "delete", "insert", "swap")


def _levels(level: float | np.ndarray, n: int) -> np.ndarray:
    """Broadcast ``level`` to one float per sample and check it lies in [0, 1]."""
    levels = np.broadcast_to(np.asarray(level, dtype=np.float64), (n,)).copy()
    if not np.isfinite(levels).all() or levels.min(initial=0.0) < 0.0 or levels.max(initial=0.0) > 1.0:
        raise ValueError(f"noise level must lie in [0, 1], got {level!r}")
    return levels


def image_noise(images: np.ndarray, level: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pixel noise plus one random occluding square, both growing with ``level``.

    Args:
        images: uint8 ``[N, H, W]`` (or a single ``[H, W]`` image), or RGB ``[N, H, W, 3]``.
        level: noise level(s) in [0, 1]: the noise std is ``level * IMAGE_SIGMA_MAX`` and the
            square's side ``level * IMAGE_OCCLUSION_MAX`` of the image side, filled with a random
            grey (it can erase strokes or paint over them).
        rng: the source of randomness.

    Returns:
        A new uint8 array of the same shape.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or not (arr.ndim in (2, 3) or (arr.ndim == 4 and arr.shape[3] == 3)):
        raise ValueError(
            f"images must be uint8 [N, H, W], [H, W] or [N, H, W, 3], got {arr.dtype} {list(arr.shape)}"
        )
    batch = arr[None] if arr.ndim == 2 else arr
    n, h, w = batch.shape[:3]
    levels = _levels(level, n)
    z = rng.standard_normal(batch.shape, dtype=np.float32)
    centre = rng.random((n, 2))
    fill = rng.integers(0, 256, size=len(batch))
    sigma = (levels * IMAGE_SIGMA_MAX).astype(np.float32).reshape(-1, *([1] * (batch.ndim - 1)))
    out = batch.astype(np.float32) + z * sigma
    sides = np.rint(levels[:, None] * IMAGE_OCCLUSION_MAX * np.array([[h, w]])).astype(int)  # [n, 2]
    for i in np.flatnonzero(sides.max(axis=1) > 0):
        sh, sw = int(sides[i, 0]), int(sides[i, 1])
        top, left = int(centre[i, 0] * (h - sh)), int(centre[i, 1] * (w - sw))
        out[i, top : top + sh, left : left + sw] = fill[i]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    unchanged = levels == 0.0
    out[unchanged] = batch[unchanged]
    return out[0] if arr.ndim == 2 else out


def snr_db(level: float | np.ndarray) -> np.ndarray:
    """The signal-to-noise ratio (dB) that :func:`audio_noise` uses at ``level`` (inf at 0)."""
    levels = np.asarray(level, dtype=np.float64)
    hi, lo = AUDIO_SNR_DB
    return np.where(levels > 0, hi + (lo - hi) * levels, np.inf)


def audio_noise(audio: np.ndarray, level: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add white noise at the SNR :func:`snr_db` gives for ``level``.

    The signal power is the mean power of the whole clip (the window the model sees), so a
    silent clip gets no noise: there is no signal for it to hide. A noisy clip that would
    leave [-1, 1] is scaled down as a whole rather than clipped, which keeps the SNR exact
    and the speech undistorted (as a recorder's gain control would).

    Args:
        audio: float32 ``[N, T]`` (or a single ``[T]`` clip).
        level: noise level(s) in [0, 1]; 0 returns the clip unchanged, 1 is -30 dB SNR.
        rng: the source of randomness.

    Returns:
        A new float32 array of the same shape.
    """
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise ValueError(f"audio must be [N, T] or [T], got {list(arr.shape)}")
    batch = arr[None] if arr.ndim == 1 else arr
    levels = _levels(level, batch.shape[0])
    z = rng.standard_normal(batch.shape, dtype=np.float32)
    power = np.mean(np.square(batch, dtype=np.float64), axis=1)
    with np.errstate(over="ignore"):
        noise_rms = np.sqrt(power / 10.0 ** (snr_db(levels) / 10.0))  # 0 where level == 0
    out = batch + z * noise_rms.astype(np.float32)[:, None]
    peak = np.abs(out).max(axis=1, initial=0.0)
    out /= np.maximum(peak, 1.0)[:, None]  # like a recorder's gain control: no clipping, same SNR
    out = out.astype(np.float32)
    return out[0] if arr.ndim == 1 else out


def corrupt_text(text: str, level: float, rng: np.random.Generator) -> str:
    """Corrupt each character with probability ``level`` by a random edit.

    The edit is a substitution, deletion, insertion (after the character) or a swap with the
    next character, chosen uniformly. The result is never blank: a blank string is not a valid
    text input, so one random letter stands in for a word corrupted away entirely.
    """
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must lie in [0, 1], got {level!r}")
    n = len(text)
    dice, ops = rng.random(n), rng.integers(0, len(TEXT_OPS), n)
    letters = rng.integers(0, len(TEXT_ALPHABET), n + 1)
    if level == 0.0:
        return text
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < n:
        if dice[i] >= level:
            out.append(chars[i])
        elif TEXT_OPS[ops[i]] == "substitute" or (TEXT_OPS[ops[i]] == "swap" and i + 1 == n):
            out.append(TEXT_ALPHABET[letters[i]])
        elif TEXT_OPS[ops[i]] == "insert":
            out += [chars[i], TEXT_ALPHABET[letters[i]]]
        elif TEXT_OPS[ops[i]] == "swap":
            out += [chars[i + 1], chars[i]]
            i += 1
        i += 1  # "delete" appends nothing
    result = "".join(out)
    return result if result.strip() else TEXT_ALPHABET[letters[n]]


def corrupt_texts(texts: list[str], level: float | np.ndarray, rng: np.random.Generator) -> list[str]:
    """:func:`corrupt_text` over a list, one level per text (or one for all)."""
    levels = _levels(level, len(texts))
    return [corrupt_text(t, float(lv), rng) for t, lv in zip(texts, levels, strict=True)]


def text_noise(
    texts: list[str], level: float | np.ndarray, rng: np.random.Generator, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Corrupt the strings and encode them as the model's ``text`` tensor, uint8 ``[N, max_bytes]``.

    A blank entry (a sample without text) stays blank: it is encoded as all zeros.
    """
    noisy = corrupt_texts(texts, level, rng)
    out = np.zeros((len(texts), max_bytes), dtype=np.uint8)
    for i, (clean, dirty) in enumerate(zip(texts, noisy, strict=True)):
        if clean.strip():
            out[i] = encode_text(dirty, max_bytes=max_bytes)
    return out
