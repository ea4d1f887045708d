"""Inputs -> the JSON of ``POST /v1/models/{name}/predict`` (docs/api.md).

The SDK sends the smallest body the server decodes exactly as it would decode the original:

* image path, bytes or file object -> ``{"b64": ...}`` of the file's own bytes (no re-encoding).
* ``PIL.Image`` -> PNG (lossless), ``{"b64": ...}``.
* ``uint8`` ndarray ``[H, W]`` / ``[H, W, C]`` -> PNG when Pillow is installed (a few hundred bytes
  instead of a JSON list), else ``{"array": ...}``. Other dtypes (floats in 0..1) go as
  ``{"array": ...}`` so the server applies its own scaling.
* audio path, bytes or file object -> ``{"b64": ...}`` of the file's bytes.
* ``(ndarray, sample_rate)`` -> a 32-bit float WAV, ``{"b64": ...}``: lossless, 4 bytes a sample
  (a JSON list costs ~20 bytes a sample and ~7 ms of server parsing per second of 16 kHz audio).
  Samples must be floats in [-1, 1]; integer PCM is refused (scale it: ``pcm / 32768``).
* text -> the string itself.

numpy and Pillow are never imported here: an array or image can only be passed by a caller who has
already imported them, so they are looked up in ``sys.modules``.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MODALITIES = ("image", "audio", "text")

ImageInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray"
)
"""A path, the file's bytes, a binary file object, a PIL image or an ``[H, W(, C)]`` array."""
AudioInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | tuple[np.ndarray, int]"
)
"""A path, the file's bytes, a binary file object, or ``(samples, sample_rate)``."""


def encode_instance(
    *, image: ImageInput | None = None, audio: AudioInput | None = None, text: str | None = None
) -> dict[str, Any]:
    """The JSON object for one sample; at least one modality is required.

    Raises:
        ValueError: No modality given, or an array of the wrong shape.
        TypeError: An input of a kind the SDK cannot send.
        FileNotFoundError: A path that does not exist.
    """
    body: dict[str, Any] = {}
    if image is not None:
        body["image"] = encode_image(image)
    if audio is not None:
        body["audio"] = encode_audio(audio)
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        body["text"] = text
    if not body:
        raise ValueError("give at least one of image=, audio=, text=")
    return body


def encode_mapping(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Encode one element of ``predict_many``'s ``instances`` (keys ``image``, ``audio``, ``text``)."""
    if not isinstance(instance, Mapping):
        raise TypeError(f"each instance must be a mapping of image/audio/text, not {type(instance).__name__}")
    unknown = sorted(set(instance) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown instance keys {unknown}; use {list(MODALITIES)}")
    return encode_instance(**instance)


def encode_image(image: Any) -> dict[str, Any]:
    """A path, bytes, file object, ``PIL.Image.Image`` or ndarray -> ``{"b64"}`` or ``{"array"}``."""
    raw = _file_bytes(image)
    if raw is not None:
        return _b64(raw)
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(image, pil.Image):
        return _b64(_png(image))
    np = sys.modules.get("numpy")
    if np is not None and isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(
                f"an image array must be [H, W] or [H, W, C], C in 1, 3, 4; got {list(image.shape)}"
            )
        if image.dtype == np.uint8 and _has_pillow():
            from PIL import Image

            pixels = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
            return _b64(_png(Image.fromarray(np.ascontiguousarray(pixels))))
        return {"array": image.tolist()}
    raise TypeError(
        f"image must be a path, bytes, a binary file, a PIL.Image or an ndarray, not {type(image).__name__}"
    )


def encode_audio(audio: Any) -> dict[str, Any]:
    """A path, bytes, file object or ``(ndarray, sample_rate)`` -> ``{"b64": ...}``."""
    raw = _file_bytes(audio)
    if raw is not None:
        return _b64(raw)
    if isinstance(audio, tuple) and len(audio) == 2:
        samples, rate = audio
        np = sys.modules.get("numpy")
        if np is not None and isinstance(samples, np.ndarray):
            if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
                raise ValueError(f"sample_rate must be a positive int, got {rate!r}")
            return _b64(wav_float32(samples, int(rate)))
    np = sys.modules.get("numpy")
    if np is not None and isinstance(audio, np.ndarray):
        raise TypeError("an audio array needs its sample rate: pass audio=(samples, sample_rate)")
    raise TypeError(
        f"audio must be a path, bytes, a binary file or (ndarray, sample_rate), not {type(audio).__name__}"
    )


def wav_float32(samples: Any, sample_rate: int) -> bytes:
    """A WAV file (IEEE float, 32 bit) holding ``[N]`` mono or ``[N, channels]`` samples as given.

    Values are not scaled: the server treats them exactly like ``{"array": ...}`` (it clips
    floats to [-1, 1]). Integer arrays are refused rather than guessed at: int16 PCM sent as
    floats would be clipped into a square wave, so the caller scales it (``pcm / 32768``).

    Raises:
        ValueError: wrong rank, or an integer array.
        TypeError: an array that does not hold numbers.
    """
    np = sys.modules["numpy"]
    if samples.ndim not in (1, 2):
        raise ValueError(f"an audio array must be [N] or [N, channels]; got {list(samples.shape)}")
    if np.issubdtype(samples.dtype, np.integer):
        raise ValueError(
            f"audio samples must be floats in [-1, 1], not {samples.dtype}: scale integer PCM first, "
            "e.g. audio=(pcm / 32768, rate) for int16"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise TypeError(f"an audio array must hold numbers, not {samples.dtype}")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    block = 4 * channels
    fmt = struct.pack("<HHIIHH", 3, channels, sample_rate, sample_rate * block, block, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _file_bytes(value: Any) -> bytes | None:
    """The bytes of a path, a bytes-like object or a binary file; ``None`` for anything else."""
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise FileNotFoundError(f"no such file: {str(path)[:200]}") from exc
        except OSError as exc:  # e.g. a base64 string passed by mistake: "file name too long"
            raise FileNotFoundError(f"cannot read {str(path)[:200]!r} as a file: {exc.strerror}") from exc
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    read = getattr(value, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, bytes):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        return data
    return None


def _png(image: Any) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _has_pillow() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}
