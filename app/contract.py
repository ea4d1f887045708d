"""The file contract shared by the trainer and the server, in one place.

What a model repository looks like on disk (``<models>/<name>/<version>/``), which input tensors
the default models take, and the media limits both sides apply to a user's files. The trainer
(``training/export.py``, ``training/pipeline.py``, ``training/data``) and the server
(:mod:`app.repository`, :mod:`app.config`) import these instead of restating them, so a folder
the trainer writes is one the server reads, and a file the trainer accepts the server accepts.

Tensor shapes come from :mod:`app.media`, the decoder both sides use: the decoder's output size
*is* the model's input size.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.manifest import NAME_PATTERN, TensorSpec
from app.media import DEFAULT_MAX_BYTES, DEFAULT_SAMPLES, DEFAULT_SIZE, MODALITIES

NAME_RE = re.compile(NAME_PATTERN)
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"

INPUT_SPECS: dict[str, TensorSpec] = {
    "image": TensorSpec(name="image", dtype="uint8", shape=[-1, DEFAULT_SIZE, DEFAULT_SIZE]),
    "audio": TensorSpec(name="audio", dtype="float32", shape=[-1, DEFAULT_SAMPLES]),
    "text": TensorSpec(name="text", dtype="uint8", shape=[-1, DEFAULT_MAX_BYTES]),
    "mask": TensorSpec(name="mask", dtype="float32", shape=[-1, len(MODALITIES)]),
}
"""The inputs of the default models (dim 0 is the batch), as :mod:`app.media` decodes them."""

MAX_IMAGE_PIXELS = 4_000_000
"""Largest image (width x height) either side decodes: a phone photo fits, a decompression bomb
does not. The server's ``FUSION_MAX_IMAGE_PIXELS`` defaults to it."""
MAX_AUDIO_SECONDS = 30.0
"""Longest clip either side decodes (``FUSION_MAX_AUDIO_SECONDS`` defaults to it)."""
MAX_TEXT_CHARS = 10_000
"""Longest text either side encodes (``FUSION_MAX_TEXT_CHARS`` defaults to it)."""


def parse_version(text: str) -> int | None:
    """A version as written in a folder name or a URL: a positive integer in ASCII digits.

    ``str.isdigit()`` alone also takes digits such as ``"²"``, which ``int()`` then refuses, and
    ``"0"`` or ``"007"`` would name versions no exporter writes; all of these are ``None``.
    """
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        return None
    return int(text)


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """``{version: folder}`` for every ``<integer>/`` folder of one model (empty if none or missing)."""
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {v: p for p in entries if (v := parse_version(p.name)) is not None and p.is_dir()}


def next_version(model_dir: Path) -> int:
    """The version an export writes next: one above the highest folder (1 for a new model)."""
    return max(version_dirs(model_dir), default=0) + 1


def latest_version_dir(model_dir: Path) -> Path | None:
    """The highest version folder of one model that holds a manifest, or ``None``."""
    with_manifest = {v: p for v, p in version_dirs(model_dir).items() if (p / MANIFEST_FILE).is_file()}
    return with_manifest[max(with_manifest)] if with_manifest else None


def scan_repository(root: Path) -> dict[str, dict[int, Path]]:
    """``{name: {version: folder}}`` for every ``<name>/<integer>/`` folder under ``root``.

    Entries that are not models (``REPORT.md``, plots, names the manifest schema refuses,
    folders without a version) are skipped.

    Raises:
        OSError: ``root`` cannot be listed (missing, not a folder, no permission).
    """
    found: dict[str, dict[int, Path]] = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
        versions = version_dirs(model_dir)
        if versions:
            found[model_dir.name] = versions
    return found
