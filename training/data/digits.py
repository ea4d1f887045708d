"""The built-in data set, "spoken, written and drawn digits" (DESIGN §6).

Every sample pairs a real handwritten MNIST digit, the digit word spoken by one of many voices
and the number word written in one of many languages. Train and val samples are noisy to a
random degree that starts at clean, and their speech passes through a random capture chain
(phone line, room, level, ...); test samples keep the fixed heavy noise of the benchmark. The
test split is also built as report tiers (:mod:`training.data.tiers`). Everything is drawn from
generators keyed by ``(seed, stream, MNIST index)``, so a sample is the same whether the full
set or a ``limit`` subset is built, and a build is bit-identical to any other with the same seed
and recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from num2words import num2words

from app.media import MODALITIES, decode_image, encode_text, normalize_digit
from training.data import augment, dataset, people, sources, speech, voices
from training.data.noise import audio_noise, corrupt_text, image_noise

log = logging.getLogger(__name__)

LANGUAGES = (
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs", "fi", "hu",
    "tr", "id", "ro", "lt", "vi", "ru", "uk", "he", "ar", "ja", "ko", "th",
)  # fmt: skip
"""num2words languages of the written word: six scripts, words that differ between languages."""
SPLIT_SIZES = {"train": 7000, "val": 1000, "test": 2000}
WPM, PITCH, GAP = (110, 230), (15, 85), (0, 10)
STRETCH = (0.85, 1.2)
"""Duration stretch range of flite and festival voices (1 = the voice's own pace)."""
NOISE_LEVELS = {"image": (0.6, 1.0), "audio": (0.7, 0.85), "text": (0.5, 0.9)}
"""Test split (the "benchmark" tier): per-sample noise level ranges (uniform), as in every report."""
CLEAN_SHARE = 0.3
"""Train and val: the chance that a modality is left clean (level 0); else uniform 0..max."""
AUGMENT_SHARE = 0.85
"""Train and val: the share of clips that pass through a capture chain (the rest are as spoken)."""
PEOPLE_SHARE = 0.15
"""Train and val: the share of images drawn "as people make them" and decoded like a request."""
RECIPE_VERSION = 2
"""Bump when the generation code changes in a way the recipe dict does not show."""
_SPLIT_STREAM, _SAMPLE_STREAM, _AUGMENT_STREAM, _TIER_STREAM = 0, 2, 3, 4


def recipe() -> dict[str, Any]:
    """Everything that decides the data besides the seed and limit; its hash keys the cache."""
    return {
        "version": RECIPE_VERSION,
        "images": sources.MNIST_PACKAGE,
        "images_sha256": sources.MNIST_SHA256,
        "image_normalization": "app.media.normalize_digit",
        "people_share": PEOPLE_SHARE,
        "people": [people.CANVAS_SIDES, people.DIGIT_SHARE, people.JPEG_SHARE],
        "accents": list(voices.ESPEAK_ACCENTS),
        "variants": list(voices.ESPEAK_VARIANTS),
        "variant_split": voices.ESPEAK_SPLIT,
        "natural_voices": [v.key for v in voices.NATURAL_VOICES],
        "natural_split": voices.NATURAL_SPLIT,
        "natural_share": voices.NATURAL_SHARE,
        "kokoro_speeds": speech.KOKORO_SPEEDS,
        "languages": list(LANGUAGES),
        "split_sizes": SPLIT_SIZES,
        "wpm": WPM,
        "pitch": PITCH,
        "gap": GAP,
        "stretch": STRETCH,
        "noise_levels": NOISE_LEVELS,
        "clean_share": CLEAN_SHARE,
        "augment": [AUGMENT_SHARE, augment.P, augment.SPEED, augment.RT60, augment.PEAK_DB, augment.DC]
        + [augment.SILENCE_S, augment.FLOOR_SNR_DB, augment.PHONE_BAND],
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


def draw_levels(split: int, rng: np.random.Generator) -> np.ndarray:
    """One noise level per modality: the benchmark range on test, clean-to-noisy on train and val.

    Both draws are always made, so the stream stays aligned whatever the split.
    """
    clean = rng.random(len(MODALITIES)) < CLEAN_SHARE
    mild = np.array([rng.uniform(0.0, NOISE_LEVELS[m][1]) for m in MODALITIES])
    heavy = np.array([rng.uniform(*NOISE_LEVELS[m]) for m in MODALITIES])
    return heavy if split == 2 else np.where(clean, 0.0, mild)


@dataclass
class Draw:
    """Everything drawn for one sample (before any rendering)."""

    job: speech.Job
    voice: int
    accent: int
    stretch: float
    language: int
    levels: np.ndarray
    people: bool
    unseen_job: speech.Job
    unseen_voice: int


def draw_sample(seed: int, k: int, split: int, label: int) -> Draw:
    """The draws of MNIST digit ``k`` (a fixed number of draws, whatever the split)."""
    rng = np.random.default_rng([seed, _SAMPLE_STREAM, k])
    word = num2words(label, lang="en")
    esp, nat = voices.espeak_pools(seed)[split], voices.natural_pools()
    accent, variant = int(rng.integers(len(voices.ESPEAK_ACCENTS))), int(esp[rng.integers(len(esp))])
    wpm, pitch, gap = (int(rng.integers(lo, hi + 1)) for lo, hi in (WPM, PITCH, GAP))
    language = int(rng.integers(len(LANGUAGES)))
    levels = draw_levels(split, rng)
    natural = rng.random() < voices.NATURAL_SHARE
    own, unseen = int(rng.choice(nat[split])), int(rng.choice(nat[2]))
    stretch, unseen_stretch = float(rng.uniform(*STRETCH)), float(rng.uniform(*STRETCH))
    speeds = rng.choice(speech.KOKORO_SPEEDS, size=2)
    augmented, people_image = rng.random() < AUGMENT_SHARE, rng.random() < PEOPLE_SHARE
    train = split != 2
    seed_tuple = (seed, _AUGMENT_STREAM, k) if train and augmented else ()
    if train and natural:
        voice, job = own, _natural_job(own, word, stretch, float(speeds[0]), seed_tuple)
    else:
        stretch = 1.0
        name = f"{voices.ESPEAK_ACCENTS[accent]}+{voices.ESPEAK_VARIANTS[variant]}"
        voice, job = variant, ("espeak", name, word, float(wpm), pitch, gap, seed_tuple)
    unseen_job = _natural_job(unseen, word, unseen_stretch, float(speeds[1]), ())
    return Draw(job, voice, accent, stretch, language, levels, train and people_image, unseen_job, unseen)


def _natural_job(voice: int, word: str, stretch: float, speed: float, aug: tuple[int, ...]) -> speech.Job:
    v = voices.VOICES[voice]
    return (v.engine, v.name, word, speed if v.engine == "kokoro" else round(stretch, 4), 0, 0, aug)


def _check_tools() -> dict[str, str]:
    sources.require_tool("espeak-ng")
    missing = sorted(set(voices.ESPEAK_VARIANTS) - set(sources.voice_variants()))
    if missing:
        raise sources.MissingToolError(
            f"this espeak-ng lacks the voice variants {missing}; the data set expects espeak-ng 1.51 "
            f"(`{sources.INSTALL_HINT}` on Debian 12 / Ubuntu 24.04)"
        )
    sources.require_tool("flite")
    sources.require_tool("festival")
    for folder in sources.FESTIVAL_VOICES:
        if not Path(folder).is_dir():
            raise sources.MissingToolError(f"festival voice {folder} is missing: `{sources.INSTALL_HINT}`")
    return {"espeak_ng": sources.espeak_version(), **speech.versions()}


def build(
    seed: int, limit: int | None, cache_dir: Path, *, progress: bool = True, workers: int | None = None
) -> tuple[dataset.MultimodalDataset, dict[str, Any], dict[str, dataset.MultimodalDataset]]:
    """Generate the data set and its report tiers (no cache lookup): ``(data, meta, tiers)``."""
    from training.data import tiers

    start = time.perf_counter()
    tools = _check_tools()
    mnist, mnist_labels = sources.mnist_digits(cache_dir)
    all_splits = assign_splits(mnist_labels, seed)
    index = select(mnist_labels, all_splits, limit, seed)
    label, split = mnist_labels[index], all_splits[index]
    draws = [draw_sample(seed, int(k), int(s), int(y)) for k, s, y in zip(index, split, label, strict=True)]
    test = np.flatnonzero(split == 2)
    jobs = [d.job for d in draws] + [draws[i].unseen_job for i in test]
    clips = speech.render(jobs, cache_dir, workers=workers or min(os.cpu_count() or 1, 8), progress=progress)
    clean_audio, unseen_audio = clips[: len(draws)], clips[len(draws) :]

    words = number_words()
    n = len(index)
    clean_image = (
        np.stack([normalize_digit(mnist[k]) for k in index]) if n else np.zeros((0, 28, 28), np.uint8)
    )
    image, audio = np.empty_like(clean_image), np.empty_like(clean_audio)
    text = np.empty((n, *dataset.ARRAYS["text"][1]), dtype=np.uint8)
    texts, clean_texts = [], []
    for i, (k, d) in enumerate(zip(index, draws, strict=True)):
        rngs = [np.random.default_rng([seed, _SAMPLE_STREAM, int(k), m]) for m in (1, 2, 3, 4)]
        base = decode_image(people.people_variant(mnist[k], rngs[3])) if d.people else clean_image[i]
        image[i] = image_noise(base, d.levels[0], rngs[0])
        audio[i] = audio_noise(clean_audio[i], d.levels[1], rngs[1])
        clean_texts.append(words[LANGUAGES[d.language]][label[i]])
        texts.append(
            unicodedata.normalize("NFC", corrupt_text(clean_texts[-1], d.levels[2], rngs[2])).strip()
        )
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
    voice = np.array([d.voice for d in draws], dtype=np.int16)
    info = {
        "voice": voice,
        "speaker": voices.speaker_index(voice),
        "engine": np.array([voices.ENGINES.index(d.job[0]) for d in draws], dtype=np.int8),
        "accent": np.array([d.accent for d in draws], dtype=np.int16),
        "wpm": np.array([d.job[3] if d.job[0] == "espeak" else 0 for d in draws], dtype=np.int16),
        "stretch": np.array([d.stretch for d in draws], dtype=np.float32),
        "augmented": np.array([bool(d.job[6]) for d in draws], dtype=np.int8),
        "people": np.array([d.people for d in draws], dtype=np.int8),
        "language": np.array([d.language for d in draws], dtype=np.int16),
        "mnist_index": index.astype(np.int32),
    }
    info |= {
        f"{m}_level": np.array([d.levels[j] for d in draws], np.float32) for j, m in enumerate(MODALITIES)
    }
    ds = dataset.MultimodalDataset(
        **arrays,
        labels=labels,
        texts=texts,
        fingerprint=dataset.fingerprint(arrays, labels, texts),
        info=info,
    )
    parts = tiers.Parts(
        data=ds,
        mnist=mnist[index[test]],
        clean_image=clean_image[test],
        clean_audio=clean_audio[test],
        clean_texts=[clean_texts[i] for i in test],
        unseen_audio=unseen_audio,
        unseen_voice=np.array([draws[i].unseen_voice for i in test], dtype=np.int16),
        rng=np.random.default_rng([seed, _TIER_STREAM]),
    )
    built_tiers = tiers.assemble(parts)
    meta = {
        "source": "default",
        "key": cache_key(seed, limit),
        "seed": seed,
        "limit": limit,
        "recipe": recipe(),
        "speakers": {dataset.SPLITS[s]: sorted(p) for s, p in voices.speaker_pools(seed).items()},
        "voice_counts": _voice_counts(voice, split, built_tiers),
        "tools": tools,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    return ds, meta, built_tiers


def _voice_counts(voice: np.ndarray, split: np.ndarray, tiers: dict[str, dataset.MultimodalDataset]) -> dict:
    """Clips per voice in each split and in the unseen-speakers tier (for meta.json and the docs)."""
    out: dict[str, dict[str, int]] = {}
    groups = {name: voice[split == s] for s, name in enumerate(dataset.SPLITS)}
    if "unseen_speakers" in tiers:
        groups["unseen_speakers"] = np.asarray(tiers["unseen_speakers"].info["voice"])
    for name, vs in groups.items():
        ids, counts = np.unique(vs, return_counts=True)
        out[name] = {voices.VOICES[int(i)].key: int(c) for i, c in zip(ids, counts, strict=True)}
    return out


def load_digits(
    seed: int = 0, limit: int | None = None, cache_dir: Path | None = None, *, progress: bool = True
) -> dataset.MultimodalDataset:
    """The built-in data set from ``cache_dir``; built and cached, with its tiers, on first use."""
    from training.data import tiers

    root = cache_dir or default_cache_dir()
    folder = root / cache_key(seed, limit)
    if not tiers.cached(seed, limit, root):
        build_and_save(seed, limit, root, progress=progress)
    return dataset.load(folder)


def build_and_save(seed: int, limit: int | None, root: Path, *, progress: bool = True) -> None:
    """Build the data set and its tiers and write whichever of them is not cached yet."""
    from training.data import tiers

    ds, meta, built = build(seed, limit, root, progress=progress)
    folder = root / cache_key(seed, limit)
    if not (folder / "meta.json").exists():
        dataset.save(ds, folder, meta)
    for name, tier in built.items():
        tier_folder = tiers.folder(seed, limit, name, root)
        if not (tier_folder / "meta.json").exists():
            dataset.save(tier, tier_folder, {**meta, "tier": name, "description": tiers.TIERS[name]})
    log.info("built %s in %.1f s: fingerprint %s", folder, meta["build_seconds"], ds.fingerprint)


def default_cache_dir() -> Path:
    """``<repo>/.cache/data`` (gitignored), wherever the command is run from."""
    return Path(__file__).resolve().parents[2] / ".cache" / "data"
