"""Report tiers: the test split of the built-in digits, four ways (issue 10).

- ``benchmark``: the noisy test split, exactly as the data set holds it (comparable to earlier
  reports: image level 0.6-1.0, audio -12 to -21 dB SNR, text 0.5-0.9).
- ``clean``: the same samples with no noise in any modality (clean MNIST digit after
  :func:`app.media.normalize_digit`, the held-out espeak-ng clip as spoken, the uncorrupted word).
- ``unseen_speakers``: clean image and text; the audio is the digit said by a speaker never heard
  in train or val (flite awb and rms, festival ked, Kokoro jf_gongitsune), as spoken: the
  measurable proxy for a human voice.
- ``people_images``: clean audio and text; the image drawn as people make it (dark ink on a
  light page, any size and place, some JPEG) and decoded by :func:`app.media.decode_image`.

Every tier is a :class:`MultimodalDataset` whose samples are all ``split == 2`` (test), built in
the same pass as the data set and cached next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.media import decode_image, encode_text
from training.data import dataset, digits, people, voices
from training.data.dataset import MultimodalDataset

TIERS = {
    "benchmark": "the noisy test split (the benchmark ranges of every report)",
    "clean": "the test samples with no noise in any modality",
    "unseen_speakers": "clean image and text; audio by speakers never heard in train or val",
    "people_images": "clean audio and text; images as people make them, decoded by app.media",
}
"""Tier names (the keys of :func:`load_tiers`) and what each holds."""


@dataclass
class Parts:
    """What :func:`digits.build` hands over for the test samples (all arrays in test order)."""

    data: MultimodalDataset
    mnist: np.ndarray
    clean_image: np.ndarray
    clean_audio: np.ndarray
    clean_texts: list[str]
    unseen_audio: np.ndarray
    unseen_voice: np.ndarray
    rng: np.random.Generator


def assemble(parts: Parts) -> dict[str, MultimodalDataset]:
    """The four tiers from the test samples of a build."""
    test = parts.data.split_view("test")
    n = len(test)
    clean_text = np.stack([encode_text(t) for t in parts.clean_texts]) if n else np.zeros((0, 64), np.uint8)
    people_image = (
        np.stack([decode_image(b) for b in people.people_variants(parts.mnist, parts.rng)])
        if n
        else np.zeros((0, 28, 28), np.uint8)
    )
    base_info = {
        k: np.asarray(test.info[k]) for k in ("mnist_index", "voice", "speaker", "engine", "language")
    }
    unseen_info = {
        **base_info,
        "voice": parts.unseen_voice,
        "speaker": voices.speaker_index(parts.unseen_voice),
        "engine": np.array(
            [voices.ENGINES.index(voices.VOICES[v].engine) for v in parts.unseen_voice], np.int8
        ),
    }
    out = {"benchmark": _make(test, {}, test.texts, dict(test.info))}
    clean = {"image": parts.clean_image, "audio": parts.clean_audio, "text": clean_text}
    out["clean"] = _make(test, clean, parts.clean_texts, base_info)
    out["unseen_speakers"] = _make(
        test, {**clean, "audio": parts.unseen_audio}, parts.clean_texts, unseen_info
    )
    out["people_images"] = _make(test, {**clean, "image": people_image}, parts.clean_texts, base_info)
    return out


def _make(
    test: MultimodalDataset, arrays: dict[str, np.ndarray], texts: list[str], info: dict[str, np.ndarray]
) -> MultimodalDataset:
    full = {name: np.asarray(arrays.get(name, getattr(test, name))) for name in dataset.ARRAYS}
    return MultimodalDataset(
        **full,
        labels=list(test.labels),
        texts=list(texts),
        fingerprint=dataset.fingerprint(full, test.labels, list(texts)),
        info=info,
        spec=test.spec,
    )


def folder(seed: int, limit: int | None, name: str, root: Path) -> Path:
    """Cache folder of one tier, next to the data set it comes from."""
    return root / f"{digits.cache_key(seed, limit)}-tier-{name}"


def cached(seed: int, limit: int | None, root: Path) -> bool:
    """Whether the data set and all its tiers are in the cache."""
    paths = [root / digits.cache_key(seed, limit), *(folder(seed, limit, t, root) for t in TIERS)]
    return all((p / "meta.json").exists() for p in paths)


def load_tiers(
    seed: int = 0, limit: int | None = None, cache_dir: Path | None = None, progress: bool = True
) -> dict[str, MultimodalDataset]:
    """The report tiers of the built-in digits (test split only), built and cached on first use.

    Args:
        seed: the data set's seed (the tiers are its test samples).
        limit: the data set's ``limit`` (tiers of a subset hold its test samples).
        cache_dir: where the data set is cached (default ``<repo>/.cache/data``).
        progress: show progress bars while building.

    Returns:
        ``{"benchmark", "clean", "unseen_speakers", "people_images"}`` -> data set, each with
        the same samples (same labels and MNIST digits) in the same order.
    """
    root = cache_dir or digits.default_cache_dir()
    if not cached(seed, limit, root):
        digits.build_and_save(seed, limit, root, progress=progress)
    return {name: dataset.load(folder(seed, limit, name, root)) for name in TIERS}
