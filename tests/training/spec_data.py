"""A tiny synthetic manifest at a spec unlike the digits': RGB pictures, 22 kHz clips, long texts.

Three classes told apart by colour, pitch and word, so a model that reads its input at the
right spec learns them in a couple of epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tests.media_fixtures import audio_bytes, image_bytes, tone

CLASSES = {"red": ((220, 30, 30), 330.0), "green": ((30, 200, 40), 660.0), "blue": ((40, 60, 230), 1320.0)}
RATE = 22_050
TINY = {
    "image_size": 32,
    "image_channels": 3,
    "audio_seconds": 0.5,
    "sample_rate": 16_000,
    "text_bytes": 128,
    "audio_normalize": False,
}
"""The tiny spec of issue 17: 32x32 RGB, 0.5 s at 16 kHz, 128 bytes; its classes are steady tones,
so the log-mel keeps each band's level (no mean removal)."""


def picture(colour: tuple[int, int, int], rng: np.random.Generator, side: int = 48) -> Image.Image:
    """A disc of ``colour`` somewhere on a noisy dark background."""
    noise = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(noise, mode="RGB")
    r = int(rng.integers(8, 14))
    x, y = (int(v) for v in rng.integers(r, side - r, 2))
    ImageDraw.Draw(img).ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return img


def write_manifest(folder: Path, per_class: int = 20, seed: int = 0) -> Path:
    """PNG + WAV files and ``manifest.jsonl`` of ``3 * per_class`` rows, some texts over 128 bytes."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "snd").mkdir(exist_ok=True)
    rows = []
    for i in range(per_class):
        for name, (colour, freq) in CLASSES.items():
            k = len(rows)
            (folder / f"img/{k}.png").write_bytes(image_bytes(picture(colour, rng)))
            seconds = float(rng.uniform(0.3, 0.8))
            wave = tone(seconds, RATE, freq * float(rng.uniform(0.97, 1.03)), 0.4) + rng.normal(
                0, 0.02, round(seconds * RATE)
            )
            (folder / f"snd/{k}.wav").write_bytes(audio_bytes(np.clip(wave, -1, 1), RATE))
            text = f"a {name} thing, number {i}" + (" with a long tail of words" * 6 if i % 4 == 0 else "")
            rows.append({"image": f"img/{k}.png", "audio": f"snd/{k}.wav", "text": text, "label": name})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest
