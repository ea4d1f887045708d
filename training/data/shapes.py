"""The second built-in data set, "shapes": coloured shapes seen, heard and read, at 48x48 RGB,
1.5 s of speech and 128 bytes of text.

Eighteen classes, ``<colour> <shape> <direction>`` (3 x 3 x 2), and each modality carries only
two of the three attributes, so no modality alone can do better than a guess on the third:

- image (RGB, drawn at 96x96 and read by the server's decoder at 48x48): the shape in its colour
  among clutter on a random background; a still picture has no direction (alone: <= 1/2);
- audio (espeak-ng, 8 accents x 101 voice variants, held out by variant): the colour and the
  direction, in one of several phrasings ("red, moving left") (alone: <= 1/3);
- text: the shape and the direction in paraphrases ("a ring drifting leftward") with light typos;
  sentence frames of the test split are never seen in training (alone: <= 1/3).

Any two modalities together name the class. Everything is drawn from the seed and cached under
``.cache/data``; ``python -m training data --data shapes`` builds it (about a minute on 2 cores).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
import multiprocessing
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from app.manifest import DecodeParams
from app.media import decode_audio, decode_image, encode_text
from training.data import dataset
from training.data.noise import corrupt_text
from training.data.sources import require_tool
from training.data.spec import make_spec
from training.data.voices import ESPEAK_ACCENTS, ESPEAK_VARIANTS, espeak_pools

SPEC: DecodeParams = make_spec(
    {"image_size": 48, "image_channels": 3, "audio_seconds": 1.5, "text_bytes": 128}
)
SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": 0.0, "green": 1 / 3, "blue": 2 / 3}
"""Colour names and their hues."""
DIRECTIONS = ("left", "right")
LABELS = [f"{c} {s} {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS]
PER_CLASS = 160
DRAW_SIDE = 96
RADIUS = (20, 32)
"""Shape radius range in pixels of the 96x96 drawing (10-16 at 48x48): big enough to tell a
triangle from a square after the server's resize; 14-26 left shape alone at 58% (colour 100%)."""
CLUTTER = (2, 6)
SPOKEN = (
    "{c}, {d}",
    "{c}, moving {d}",
    "{c} one, going {d}",
    "it is {c} and it heads {d}",
    "{c}, to the {d}",
)
NOUNS = {
    "circle": ("circle", "round one", "ring", "disc", "ball"),
    "square": ("square", "box", "block", "four sided one", "tile"),
    "triangle": ("triangle", "three sided one", "wedge", "pyramid shape", "arrowhead"),
}
MOVES = {
    "left": ("going left", "moving to the left", "drifting leftward", "heading west", "sliding left"),
    "right": ("going right", "moving to the right", "drifting rightward", "heading east", "sliding right"),
}
FRAMES_TRAIN = ("a {s}, {d}", "the {s} is {d}", "I see a {s} {d}", "{s} {d}", "there is a {s} {d} here")
FRAMES_TEST = ("look: one {s}, {d}", "my {s} keeps {d}")
SPLIT_SHARE = (0.7, 0.1, 0.2)


def recipe() -> dict[str, Any]:
    """Everything that decides the data (part of the cache key)."""
    return {
        "version": 2,
        "radius": RADIUS,
        "clutter": CLUTTER,
        "spec": SPEC.model_dump(),
        "labels": LABELS,
        "per_class": PER_CLASS,
        "spoken": SPOKEN,
        "nouns": NOUNS,
        "moves": MOVES,
        "frames": [FRAMES_TRAIN, FRAMES_TEST],
    }


def cache_key(seed: int, limit: int | None) -> str:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return f"shapes-seed{seed}-{'full' if limit is None else f'limit{limit}'}-{digest}"


def attributes(label: int) -> tuple[str, str, str]:
    """``(colour, shape, direction)`` of class ``label``."""
    return tuple(LABELS[label].split())  # type: ignore[return-value]


def draw(colour: str, shape: str, rng: np.random.Generator) -> bytes:
    """A PNG of ``shape`` in (a jittered) ``colour`` among dull clutter, at DRAW_SIDE pixels."""
    side = DRAW_SIDE
    bg = tuple(int(v) for v in rng.integers(10, 110, 3))
    img = Image.new("RGB", (side, side), bg)
    pen = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(*CLUTTER))):  # clutter: greys and browns, never a class colour
        grey = int(rng.integers(60, 170))
        tint = tuple(int(np.clip(grey + d, 0, 255)) for d in rng.integers(-12, 12, 3))
        x, y = (int(v) for v in rng.integers(0, side, 2))
        w, h = (int(v) for v in rng.integers(4, 16, 2))
        if rng.random() < 0.5:
            pen.ellipse((x, y, x + w, y + h), fill=tint)
        else:
            pen.line((x, y, x + w, y + h), fill=tint, width=2)
    hue = (COLOURS[colour] + rng.uniform(-0.04, 0.04)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
    fill = tuple(int(255 * v) for v in rgb)
    r = float(rng.uniform(*RADIUS))
    cx, cy = (float(v) for v in rng.uniform(r + 2, side - r - 2, 2))
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        corners = 4 if shape == "square" else 3
        turn = rng.uniform(0, 2 * math.pi)
        points = [
            (
                cx + r * math.cos(turn + 2 * math.pi * k / corners),
                cy + r * math.sin(turn + 2 * math.pi * k / corners),
            )
            for k in range(corners)
        ]
        pen.polygon(points, fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def speak(job: tuple[str, str, int, int, int]) -> np.ndarray:
    """One espeak-ng phrase ``(voice, text, wpm, pitch, seed)`` at SPEC, with light capture noise."""
    voice, text, wpm, pitch, seed = job
    cmd = [require_tool("espeak-ng"), "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text]
    wav = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout
    clip = decode_audio(wav, sample_rate=SPEC.sample_rate, samples=SPEC.audio_samples)
    rng = np.random.default_rng(seed)
    power = float(np.mean(clip**2)) or 1e-6
    noise = rng.standard_normal(clip.shape[0]) * math.sqrt(power / 10 ** (rng.uniform(15, 40) / 10))
    return np.clip(clip + noise, -1, 1).astype(np.float32)


def _speak_chunk(jobs: list[tuple[str, str, int, int, int]]) -> np.ndarray:
    return np.stack([speak(j) for j in jobs])


def build(
    seed: int = 0, limit: int | None = None, *, workers: int = 2, progress: bool = True
) -> dataset.MultimodalDataset:
    """Draw the whole data set (see the module docstring)."""
    rng = np.random.default_rng([seed, 17])
    labels = np.repeat(np.arange(len(LABELS)), PER_CLASS)
    split = np.zeros(len(labels), dtype=np.int8)
    for c in range(len(LABELS)):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(PER_CLASS * SPLIT_SHARE[1]), round(PER_CLASS * SPLIT_SHARE[2])
        split[members[PER_CLASS - n_val - n_test : PER_CLASS - n_test]] = 1
        split[members[PER_CLASS - n_test :]] = 2
    keep = np.arange(len(labels))
    if limit is not None and limit < len(labels):
        keep = np.sort(dataset.stratified_order(split * len(LABELS) + labels, rng)[:limit])
    labels, split = labels[keep], split[keep]
    n = len(labels)
    pools = espeak_pools(seed)
    images = np.zeros((n, SPEC.image_size, SPEC.image_size, 3), dtype=np.uint8)
    texts, jobs, voice = [], [], np.zeros(n, dtype=np.int16)
    for i in tqdm(range(n), desc="drawing shapes", unit="scene", disable=not progress):
        colour, shape, direction = attributes(int(labels[i]))
        images[i] = decode_image(draw(colour, shape, rng), size=SPEC.image_size, channels=3, normalize=False)
        frames = FRAMES_TEST if split[i] == 2 else FRAMES_TRAIN
        sentence = str(rng.choice(frames)).format(s=rng.choice(NOUNS[shape]), d=rng.choice(MOVES[direction]))
        texts.append(corrupt_text(sentence, float(rng.uniform(0.0, 0.08)), rng))
        variant = int(rng.choice(pools[int(split[i])]))
        voice[i] = variant
        accent = str(rng.choice(ESPEAK_ACCENTS))
        said = str(rng.choice(SPOKEN)).format(c=colour, d=direction)
        jobs.append(
            (
                f"{accent}+{ESPEAK_VARIANTS[variant]}",
                said,
                int(rng.integers(130, 200)),
                int(rng.integers(20, 80)),
                int(rng.integers(2**31)),
            )
        )
    chunks = [jobs[i : i + 64] for i in range(0, n, 64)]
    bar = tqdm(total=n, desc="speaking shapes", unit="clip", disable=not progress)
    audio = np.zeros((n, SPEC.audio_samples), dtype=np.float32)
    done = 0
    # spawn: a fresh interpreter per worker, safe next to torch's and tqdm's threads
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for clips in pool.map(_speak_chunk, chunks):
            audio[done : done + len(clips)] = clips
            done += len(clips)
            bar.update(len(clips))
    bar.close()
    text = np.stack([encode_text(t, max_bytes=SPEC.text_bytes) for t in texts])
    arrays: dict[str, np.ndarray] = {
        "image": images,
        "audio": audio,
        "text": text,
        "mask": np.ones((n, 3), dtype=np.float32),
        "label": labels.astype(np.int64),
        "split": split,
    }
    return dataset.MultimodalDataset(
        **arrays,
        labels=list(LABELS),
        texts=texts,
        fingerprint=dataset.fingerprint(arrays, LABELS, texts),
        info={"voice": voice},
        spec=SPEC,
    )


def load_shapes(
    seed: int = 0, limit: int | None = None, cache_dir: Path | None = None, *, progress: bool = True
) -> dataset.MultimodalDataset:
    """The shapes data set from the cache, built on first use."""
    from training.data.digits import default_cache_dir

    folder = (cache_dir or default_cache_dir()) / cache_key(seed, limit)
    if not (folder / "meta.json").exists():
        start = time.perf_counter()
        ds = build(seed, limit, progress=progress)
        meta = {
            "recipe": recipe(),
            "seed": seed,
            "limit": limit,
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        dataset.save(ds, folder, meta)
    return dataset.load(folder)
