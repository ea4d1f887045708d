"""Would a benchmark-like slice of val calibrate ``audio_only`` on the benchmark? (issue 10)

``audio_only`` is the one served model over issue 10's ECE target on the benchmark tier (11%):
the benchmark's audio is unaugmented espeak-ng clips at heavy noise, while val holds Kokoro and
capture-augmented clips, and the model is right more often on the benchmark's voices than on
val's at the same noise. The fix that needs a decision is to give val a slice made the way the
benchmark is made. This script measures what that would buy before anyone changes the data:

- the slice: val's own espeak-ng samples (voices of val's pool, never the benchmark's), spoken
  again *without* the capture chain (the same words, voices, speeds and pitches), at a fresh
  heavy noise level drawn from the benchmark's audio range (``NOISE_LEVELS``);
- one more temperature on top of the served model, fitted (NLL) on val as stored, on the slice
  alone, and on both, then the ECE of each on the benchmark, the clean tier and the unseen
  speakers, read once;
- as a bound only, the temperature fitted on the benchmark itself: the best one temperature can
  do there (fitting on the test split is what the served models must never do).

Nothing here changes the data, the models or the report. Run from the repository root after
``make data`` (espeak-ng speaks the slice; about a minute)::

    .venv/bin/python -m training.experiments.benchmark_like_val [--models models]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from training.calibration import ece
from training.data import load_dataset, speech, voices
from training.data.digits import NOISE_LEVELS, default_cache_dir, draw_sample
from training.data.noise import audio_noise
from training.data.tiers import load_tiers
from training.evaluate import OnnxModel
from training.experiments.noise_temperature import fit_log_temperature
from training.pipeline import latest_models

SEED = 0
SLICE_STREAM = 11
"""A generator stream of its own for the slice's noise, so no data-set draw is reused."""


def benchmark_like_slice(cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Val's espeak-ng samples spoken again without the capture chain, at heavy noise: (audio, labels)."""
    ds = load_dataset("default", seed=SEED, progress=False)
    val = ds.split_view("val")
    espeak = np.flatnonzero(np.asarray(val.info["engine"]) == voices.ENGINES.index("espeak"))
    labels = np.asarray(val.label)[espeak]
    jobs: list[speech.Job] = []
    for k, y in zip(np.asarray(val.info["mnist_index"])[espeak], labels, strict=True):
        job = draw_sample(SEED, int(k), 1, int(y)).job
        assert job[0] == "espeak", job
        engine, voice, word, speed, pitch, gap, _ = job
        jobs.append((engine, voice, word, speed, pitch, gap, ()))  # as spoken: no phone line, room, gain, ...
    cache = cache_dir or default_cache_dir()
    clips = speech.render(jobs, cache, workers=min(os.cpu_count() or 1, 8), progress=False)
    rng = np.random.default_rng([SEED, SLICE_STREAM])
    lo, hi = NOISE_LEVELS["audio"]
    noisy = np.stack([audio_noise(c, float(rng.uniform(lo, hi)), rng) for c in clips])
    return noisy.astype(np.float32), labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    model_dir = next(d for d in latest_models(args.models) if d.parent.name == "audio_only")
    model = OnnxModel(model_dir)
    ds = load_dataset("default", seed=SEED, progress=False)
    val = ds.split_view("val")
    tiers = load_tiers(seed=SEED, progress=False)

    def logits(audio: np.ndarray) -> np.ndarray:
        return model.logits({"audio": np.asarray(audio, np.float32)}, np.ones((len(audio), 3), np.float32))

    slice_audio, slice_labels = benchmark_like_slice()
    fit_sets = {
        "val as stored": (logits(val.audio), np.asarray(val.label)),
        "the slice": (logits(slice_audio), slice_labels),
    }
    fit_sets["val + the slice"] = tuple(  # type: ignore[assignment]
        np.concatenate([fit_sets[k][i] for k in ("val as stored", "the slice")]) for i in (0, 1)
    )
    reads = {name: (logits(tiers[name].audio), np.asarray(tiers[name].label)) for name in
             ("benchmark", "clean", "unseen_speakers")}  # fmt: skip
    acc = (fit_sets["the slice"][0].argmax(1) == slice_labels).mean()
    print(f"slice: {len(slice_labels)} clips, audio_only accuracy {100 * acc:.1f}% (benchmark: "
          f"{100 * (reads['benchmark'][0].argmax(1) == reads['benchmark'][1]).mean():.1f}%)")  # fmt: skip
    print(
        f"{'extra temperature fitted on':24s} {'T':>6s} "
        + " ".join(f"{n:>16s}" for n in reads)
        + "   (ECE %)"
    )
    rows = [("none (served)", 1.0)]
    for name, (z, y) in fit_sets.items():
        w = fit_log_temperature(z, y, np.zeros((len(y), 0), np.float32))
        rows.append((name, float(torch.exp(w[0]))))
    z, y = reads["benchmark"]  # a bound, never a choice: what one temperature could do at best
    w = fit_log_temperature(z, y, np.zeros((len(y), 0), np.float32))
    rows.append(("the benchmark (bound)", float(torch.exp(w[0]))))
    for name, t in rows:
        cells = [100 * ece(torch.tensor(z).double() / t, torch.tensor(y)) for z, y in reads.values()]
        print(f"{name:24s} {t:6.3f} " + " ".join(f"{c:16.1f}" for c in cells))


if __name__ == "__main__":
    main()
