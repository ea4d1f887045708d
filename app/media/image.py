"""Image bytes or arrays -> the model's ``image`` tensor: uint8 ``[size, size]`` grayscale, or
``[size, size, 3]`` RGB for a model whose spec has 3 channels.

Pillow does the decoding at the picture's own resolution. Then, by default, a grey digit is
normalised as MNIST was made (:func:`app.media.digit.normalize_digit`: polarity from the
border, crop to the ink, 20/28 box, centre of mass), so a canvas drawing, a scan or a photo
looks like what the model was trained on. With ``normalize=False`` (and always for RGB) the
whole picture is only scaled to fit the square (aspect kept, nothing cropped) and padded with
black. What changed (size, colour) is recorded in ``adjusted`` (:mod:`app.media.adjust`).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.media.adjust import Adjusted, record
from app.media.digit import fit_square, normalize_digit, normalize_image
from app.media.errors import MediaError, MediaTooLarge

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SIZE",
    "decode_image",
    "image_from_array",
    "normalize_digit",
]

DEFAULT_SIZE = 28
DEFAULT_CHANNELS = 1
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: above any camera photo, below a decompression bomb
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def decode_image(
    data: bytes,
    *,
    size: int = DEFAULT_SIZE,
    channels: int = DEFAULT_CHANNELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    normalize: bool = True,
    adjusted: Adjusted | None = None,
) -> np.ndarray:
    """Decode PNG/JPEG/any Pillow format into uint8 ``[size, size]`` (grey) or ``[size, size, 3]``.

    The pixel count is checked from the header before any pixel is decoded. ``normalize``
    re-makes a grey digit MNIST-style (see the module docstring); False only fits the picture.
    ``channels`` is 1 (grey) or 3 (RGB); ``adjusted`` receives what was changed to fit.

    Raises:
        MediaError: empty, truncated or unrecognised bytes.
        MediaTooLarge: more than ``max_pixels`` pixels.
    """
    if not data:
        raise MediaError("image", "is empty (0 bytes)")
    try:
        # No warnings.catch_warnings() here: it swaps process-wide state and is not thread-safe.
        # Our own header check comes first for any sane limit; Pillow's bomb error is the backstop.
        img: Image.Image = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise MediaTooLarge("image", f"has {width}x{height} pixels, more than the limit of {max_pixels}")
        if width == 0 or height == 0:
            raise MediaError("image", f"has no pixels ({width}x{height})")
        img.load()
        # inside the try: a malformed EXIF block must be a bad image, not a server error
        img = ImageOps.exif_transpose(img)
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaTooLarge("image", f"is too large to decode: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise MediaError("image", "is not an image format that can be read (PNG, JPEG, ...)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError, struct.error) as exc:
        raise MediaError("image", f"could not be decoded: {exc}") from exc
    return _fit(img, size, channels, normalize, adjusted)


def image_from_array(
    array: np.ndarray,
    *,
    size: int = DEFAULT_SIZE,
    channels: int = DEFAULT_CHANNELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    normalize: bool = True,
    adjusted: Adjusted | None = None,
) -> np.ndarray:
    """Turn an ``[H, W]`` or ``[H, W, C]`` array (C = 1, 3 or 4) into the model's image.

    ``channels``, ``normalize`` and ``adjusted`` as in :func:`decode_image`.

    Integer arrays must hold 0..255; float arrays must hold 0..1 (the MNIST convention).

    Raises:
        MediaError: wrong rank, channel count, non-finite or out-of-range values.
        MediaTooLarge: more than ``max_pixels`` pixels.
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise MediaError(
            "image", f"array must have shape [H, W] or [H, W, C] with C in 1, 3, 4; got {list(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MediaError("image", f"array has no pixels ({list(arr.shape)})")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise MediaTooLarge("image", f"array has more than {max_pixels} pixels")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise MediaError("image", f"array must hold integers 0..255 or floats 0..1, not {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise MediaError("image", "array holds NaN or infinite values")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise MediaError("image", "float array values must lie in [0, 1]")
        arr = np.rint(arr * 255.0)
    elif arr.min() < 0 or arr.max() > 255:
        raise MediaError("image", "integer array values must lie in 0..255")
    arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2] if arr.ndim == 3 else 2]
    return _fit(Image.fromarray(arr, mode=mode), size, channels, normalize, adjusted)


def _fit(
    img: Image.Image, size: int, channels: int, normalize: bool, adjusted: Adjusted | None
) -> np.ndarray:
    """The decoded picture -> the spec's square and channels, recording what changed."""
    width, height = img.size
    try:
        if channels == 3:
            out = fit_square(_to_rgb(img), size)
        else:
            out = _to_square(_to_grayscale(img, normalize), size, normalize)
    except (ValueError, OSError) as exc:
        raise MediaError("image", f"has unusable pixels (mode {img.mode}): {exc}") from exc
    if adjusted is not None and (
        (width, height) != (size, size) or (channels == 1 and img.mode not in _GREY_MODES)
    ):
        _note(adjusted, (width, height), img.mode, size, channels, normalize)
    return out


def _note(
    adjusted: Adjusted, dims: tuple[int, int], mode: str, size: int, channels: int, normalize: bool
) -> None:
    actions, details = [], []
    if dims != (size, size):
        actions.append("resized")
        how = (
            "the digit cropped to its ink and re-centred"
            if normalize and channels == 1
            else "aspect kept, padded"
        )
        details.append(f"resized from {dims[0]}x{dims[1]} to {size}x{size} ({how})")
    if channels == 1 and mode not in _GREY_MODES:
        actions.append("greyscaled")
        details.append(f"converted from {mode} to grey (the model reads grey pixels)")
    colour = "grey" if channels == 1 else "RGB"
    original = {"width": dims[0], "height": dims[1], "mode": mode}
    record(adjusted, "image", actions, original, {"width": size, "height": size, "mode": colour}, details)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> ``RGB``; transparency is composited onto black (the padding colour)."""
    if img.mode in ("RGB",):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "LAB"):
        return _to_grayscale(img).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def _to_grayscale(img: Image.Image, contrast_alpha: bool = False) -> Image.Image:
    """Any Pillow mode -> 8-bit ``L``; transparency is composited onto black.

    With ``contrast_alpha`` (the normalising path), a picture whose opaque pixels are dark
    (a black pen on a transparent canvas) is composited onto white instead, so its ink is not
    lost on a black background; normalisation then inverts it.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("the image holds NaN or infinite pixel values")
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if img.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        scaled = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    if img.mode == "LAB":
        return img.getchannel("L")  # lightness is the grey level; Pillow cannot convert LAB
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        colour = (0, 0, 0, 255)
        if contrast_alpha and _dark_ink(rgba):
            colour = (255, 255, 255, 255)  # dark strokes on a transparent canvas: paper, not night
        return Image.alpha_composite(Image.new("RGBA", rgba.size, colour), rgba).convert("L")
    return img.convert("L")


def _to_square(img: Image.Image, size: int, normalize: bool) -> np.ndarray:
    return normalize_image(img, size) if normalize else fit_square(img, size)


def _dark_ink(rgba: Image.Image) -> bool:
    """True when the visible pixels of a picture with transparency are mostly dark."""
    arr = np.asarray(rgba, dtype=np.float32)
    alpha = arr[..., 3] / 255.0
    if alpha.min(initial=1.0) > 0.5 or alpha.sum() == 0:
        return False  # nothing really transparent, or nothing visible: keep the black background
    luma = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return float((luma * alpha).sum() / alpha.sum()) < 128.0
