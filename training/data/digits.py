"""The built-in data set, "spoken, written and drawn digits" (DESIGN §6).

Every sample pairs a real handwritten MNIST digit, the digit word spoken by espeak-ng and the
number word written in one of many languages, all three corrupted so that no modality alone
is enough. Everything is drawn from generators keyed by ``(seed, stream, MNIST index)``, so a
sample is the same whether the full set or a ``limit`` subset is built, and a build is
bit-identical to any other with the same seed and recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from num2words import num2words
from tqdm import tqdm

from app.media import MODALITIES, encode_text
from training.data import dataset, sources
from training.data.noise import audio_noise, corrupt_text, image_noise

log = logging.getLogger(__name__)

ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
    "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "anika", "anikaRobot", "Annie", "announcer", "antonio",
    "AnxiousAndy", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "Demonic", "Denis",
    "Diogo", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "Gene", "Gene2", "grandma",
    "grandpa", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Lee", "linda", "m1", "m2",
    "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel",
    "Mike", "Mr serious", "Nguyen", "norbert", "pablo", "paul", "pedro", "quincy", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
    "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3",
    "Storm", "travis", "Tweaky", "UniRobot", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip
"""The 101 voice variants of espeak-ng 1.51 (``espeak-ng --voices=variant``)."""
VARIANT_SPLIT = {"train": 71, "val": 10, "test": 20}
"""Voice variants per split; val and test voices are never heard in training."""
LANGUAGES = (
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs", "fi", "hu",
    "tr", "id", "ro", "lt", "vi", "ru", "uk", "he", "ar", "ja", "ko", "th",
)  # fmt: skip
"""num2words languages of the written word: six scripts, words that differ between languages."""
SPLIT_SIZES = {"train": 7000, "val": 1000, "test": 2000}
WPM, PITCH, GAP = (110, 230), (15, 85), (0, 10)
NOISE_LEVELS = {"image": (0.6, 1.0), "audio": (0.7, 0.85), "text": (0.5, 0.9)}
"""Per-sample noise level ranges (uniform) fed to :mod:`training.data.noise`."""
RECIPE_VERSION = 1
"""Bump when the generation code changes in a way the recipe dict does not show."""
_SPLIT_STREAM, _VOICE_STREAM, _SAMPLE_STREAM = 0, 1, 2


def recipe() -> dict[str, Any]:
    """Everything that decides the data besides the seed and limit; its hash keys the cache."""
    return {
        "version": RECIPE_VERSION,
        "images": sources.MNIST_PACKAGE,
        "images_sha256": sources.MNIST_SHA256,
        "accents": list(ACCENTS),
        "variants": list(VARIANTS),
        "variant_split": VARIANT_SPLIT,
        "languages": list(LANGUAGES),
        "split_sizes": SPLIT_SIZES,
        "wpm": WPM,
        "pitch": PITCH,
        "gap": GAP,
        "noise_levels": NOISE_LEVELS,
    }


def cache_key(seed: int, limit: int | None) -> str:
    """Folder name of a build: readable parameters plus a hash of the recipe."""
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return f"digits-seed{seed}-{'full' if limit is None else f'limit{limit}'}-{digest}"


def number_words() -> dict[str, list[str]]:
    """``{language: [word for 0..9]}``, NFC-normalised."""
    return {
        lang: [unicodedata.normalize("NFC", num2words(d, lang=lang)) for d in range(10)] for lang in LANGUAGES
    }


def assign_splits(labels: np.ndarray, seed: int) -> np.ndarray:
    """int8 split per MNIST digit: exactly 7000/1000/2000, stratified by class.

    Digits are ordered by (class, random rank) and dealt a repeating pattern of 7 train,
    1 val and 2 test, so every class lands within one sample of 70/10/20.
    """
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    order = np.lexsort((rng.random(len(labels)), labels))
    sizes = list(SPLIT_SIZES.values())
    unit = np.repeat(np.arange(len(sizes), dtype=np.int8), [10 * s // sum(sizes) for s in sizes])
    rng.shuffle(unit)
    split = np.empty(len(labels), dtype=np.int8)
    split[order] = np.resize(unit, len(labels))
    return split


def select(labels: np.ndarray, split: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted MNIST indices of a ``limit``-sample subset: 70/10/20 over the splits, classes balanced."""
    if limit is None:
        return np.arange(len(labels))
    if not 10 <= limit <= len(labels):
        raise ValueError(f"limit must lie between 10 and {len(labels)}, got {limit}")
    rng = np.random.default_rng([seed, _SPLIT_STREAM, 1])
    n_val, n_test = round(limit * 0.1), round(limit * 0.2)
    picked = []
    for s, n in enumerate((limit - n_val - n_test, n_val, n_test)):
        members = np.flatnonzero(split == s)
        picked.append(members[dataset.stratified_order(labels[members], rng)[:n]])
    return np.sort(np.concatenate(picked))


def voice_pools(seed: int) -> dict[int, np.ndarray]:
    """Indices into :data:`VARIANTS` for each split (disjoint)."""
    perm = np.random.default_rng([seed, _VOICE_STREAM]).permutation(len(VARIANTS))
    n_train, n_val, _ = VARIANT_SPLIT.values()
    parts = np.split(perm, [n_train, n_train + n_val])
    return {s: np.sort(part) for s, part in enumerate(parts)}


def _check_tools() -> str:
    sources.require_tool("espeak-ng")
    missing = sorted(set(VARIANTS) - set(sources.voice_variants()))
    if missing:
        raise sources.MissingToolError(
            f"this espeak-ng lacks the voice variants {missing}; the data set expects espeak-ng 1.51 "
            f"(`{sources.INSTALL_HINT}` on Debian 12 / Ubuntu 24.04)"
        )
    return sources.espeak_version()


def _speak_all(jobs: list[tuple[str, str, int, int, int]], workers: int, progress: bool) -> np.ndarray:
    """Run espeak-ng for every job, over ``workers`` processes when there are enough jobs."""
    out = np.empty((len(jobs), dataset.ARRAYS["audio"][1][0]), dtype=np.float32)
    bar = tqdm(total=len(jobs), desc="speaking digits", unit="clip", disable=not progress)
    if workers > 1 and len(jobs) >= 256:
        # spawn: a fresh interpreter per worker, safe next to torch's and tqdm's threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for i, clip in enumerate(pool.map(sources.speak, jobs, chunksize=32)):
                out[i] = clip
                bar.update()
    else:
        for i, job in enumerate(jobs):
            out[i] = sources.speak(job)
            bar.update()
    bar.close()
    return out


def build(
    seed: int, limit: int | None, cache_dir: Path, *, progress: bool = True, workers: int | None = None
) -> tuple[dataset.MultimodalDataset, dict[str, Any]]:
    """Generate the data set (no cache lookup); returns it and its meta.json content."""
    start = time.perf_counter()
    espeak = _check_tools()
    mnist, mnist_labels = sources.mnist_digits(cache_dir)
    all_splits = assign_splits(mnist_labels, seed)
    index = select(mnist_labels, all_splits, limit, seed)
    label, split = mnist_labels[index], all_splits[index]
    pools, words = voice_pools(seed), number_words()
    spoken = [num2words(d, lang="en") for d in range(10)]
    n = len(index)
    params = np.zeros((n, 6), dtype=np.int64)  # accent, voice, wpm, pitch, gap, language
    levels = np.zeros((n, 3), dtype=np.float64)
    for i, (k, s) in enumerate(zip(index, split, strict=True)):
        rng = np.random.default_rng([seed, _SAMPLE_STREAM, int(k)])
        pool = pools[int(s)]
        params[i] = (
            rng.integers(len(ACCENTS)),
            pool[rng.integers(len(pool))],
            rng.integers(WPM[0], WPM[1] + 1),
            rng.integers(PITCH[0], PITCH[1] + 1),
            rng.integers(GAP[0], GAP[1] + 1),
            rng.integers(len(LANGUAGES)),
        )
        levels[i] = [rng.uniform(*NOISE_LEVELS[m]) for m in MODALITIES]
    jobs = [
        (spoken[y], f"{ACCENTS[a]}+{VARIANTS[v]}", int(w), int(p), int(g))
        for y, (a, v, w, p, g, _) in zip(label, params, strict=True)
    ]
    clean_audio = _speak_all(jobs, workers or min(os.cpu_count() or 1, 8), progress)

    image = np.empty((n, *dataset.ARRAYS["image"][1]), dtype=np.uint8)
    audio = np.empty_like(clean_audio)
    text = np.empty((n, *dataset.ARRAYS["text"][1]), dtype=np.uint8)
    texts: list[str] = []
    for i, k in enumerate(index):
        rngs = [np.random.default_rng([seed, _SAMPLE_STREAM, int(k), m]) for m in (1, 2, 3)]
        image[i] = image_noise(mnist[k], levels[i, 0], rngs[0])
        audio[i] = audio_noise(clean_audio[i], levels[i, 1], rngs[1])
        word = words[LANGUAGES[params[i, 5]]][label[i]]
        texts.append(unicodedata.normalize("NFC", corrupt_text(word, levels[i, 2], rngs[2])).strip())
        text[i] = encode_text(texts[-1])
    arrays = {
        "image": image,
        "audio": audio,
        "text": text,
        "mask": np.ones((n, 3), dtype=np.float32),
        "label": label.astype(np.int64),
        "split": split.astype(np.int8),
    }
    labels = [str(d) for d in range(10)]
    names = ("accent", "voice", "wpm", "pitch", "gap", "language")
    info = {name: params[:, j].astype(np.int16) for j, name in enumerate(names)}
    info |= {f"{m}_level": levels[:, j].astype(np.float32) for j, m in enumerate(MODALITIES)}
    info["mnist_index"] = index.astype(np.int32)
    ds = dataset.MultimodalDataset(
        **arrays,
        labels=labels,
        texts=texts,
        fingerprint=dataset.fingerprint(arrays, labels, texts),
        info=info,
    )
    meta = {
        "source": "default",
        "key": cache_key(seed, limit),
        "seed": seed,
        "limit": limit,
        "recipe": recipe(),
        "voice_pools": {dataset.SPLITS[s]: [VARIANTS[v] for v in pool] for s, pool in pools.items()},
        "espeak_ng": espeak,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    return ds, meta


def load_digits(
    seed: int = 0, limit: int | None = None, cache_dir: Path | None = None, *, progress: bool = True
) -> dataset.MultimodalDataset:
    """The built-in data set from ``cache_dir``, built and cached on first use."""
    root = cache_dir or default_cache_dir()
    folder = root / cache_key(seed, limit)
    if (folder / "meta.json").exists():
        return dataset.load(folder)
    ds, meta = build(seed, limit, root, progress=progress)
    dataset.save(ds, folder, meta)
    log.info("built %s in %.1f s: fingerprint %s", folder, meta["build_seconds"], ds.fingerprint)
    return ds


def default_cache_dir() -> Path:
    """``<repo>/.cache/data`` (gitignored), wherever the command is run from."""
    return Path(__file__).resolve().parents[2] / ".cache" / "data"
