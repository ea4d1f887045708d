"""What an input spec costs to serve: decode and model time per spec, one thread.

``python -m training.spec_cost`` builds each fusion at a few specs (weights untrained: the cost
does not depend on them), exports it to ONNX, and measures with onnxruntime on one thread the
p50 of one sample and the samples/s of a batch of 32, and the p50 of decoding the same photo
(640x480 JPEG), clip (3 s of 44.1 kHz WAV) and 300-character text to each spec with
:mod:`app.media`. The numbers go into docs/specs.md.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf
from PIL import Image

from app.manifest import DecodeParams
from app.media import decode_audio, decode_image, encode_text
from training.data.spec import make_spec
from training.export import example_inputs, export_onnx
from training.fusion import build_model
from training.graph import wrap

SPECS = {
    "digits": make_spec(),
    "tiny": make_spec({"image_size": 32, "image_channels": 3, "audio_seconds": 0.5, "text_bytes": 128}),
    "medium": make_spec({"image_size": 64, "image_channels": 3, "audio_seconds": 2.0, "text_bytes": 256}),
    "photo": make_spec({"image_size": 224, "image_channels": 3, "audio_seconds": 5.0, "text_bytes": 512}),
}


def p50_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def payloads() -> tuple[bytes, bytes, str]:
    """A 640x480 JPEG photo, 3 s of 44.1 kHz speech-band noise as WAV, 300 characters of text."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), mode="RGB")
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=85)
    wav = io.BytesIO()
    sf.write(wav, (rng.standard_normal(3 * 44_100) * 0.1).clip(-1, 1), 44_100, format="WAV", subtype="PCM_16")
    return jpeg.getvalue(), wav.getvalue(), ("a red circle left of a blue square " * 10)[:300]


def decode_ms(spec: DecodeParams, jpeg: bytes, wav: bytes, text: str) -> float:
    """p50 of decoding one photo + clip + text to ``spec``."""

    def run() -> None:
        decode_image(jpeg, size=spec.image_size, channels=spec.image_channels, normalize=spec.image_normalize)
        decode_audio(wav, sample_rate=spec.sample_rate, samples=spec.audio_samples)
        encode_text(text, max_bytes=spec.text_bytes)

    return p50_ms(run, 30)


def model_cost(name: str, spec: DecodeParams, folder: Path) -> tuple[float, float, float]:
    """(p50 ms at batch 1, samples/s at batch 32, ONNX MB) of model ``name`` at ``spec``."""
    graph = wrap(build_model(name, 10, spec).eval())
    path = folder / f"{name}.onnx"
    export_onnx(graph, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    one, batch = example_inputs(graph, 1), example_inputs(graph, 32)
    single = p50_ms(lambda: session.run(None, one), 50)
    batched = p50_ms(lambda: session.run(None, batch), 10)
    return single, 32 / (batched / 1000), path.stat().st_size / 1e6


def main(models: tuple[str, ...] = ("late", "gated")) -> None:
    """Print a markdown table: spec, decode p50, and per model p50 / throughput / size."""
    jpeg, wav, text = payloads()
    head = " | ".join(f"{m} p50 ms | {m} samples/s (b=32) | {m} MB" for m in models)
    print(f"| spec | input values | decode p50 ms | {head} |")
    print("|" + "---|" * (3 + 3 * len(models)))
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in SPECS.items():
            values = spec.image_size**2 * spec.image_channels + spec.audio_samples + spec.text_bytes
            cells = []
            for name in models:
                single, rate, mb = model_cost(name, spec, Path(tmp))
                cells.append(f"{single:.2f} | {rate:,.0f} | {mb:.2f}")
            print(
                f"| {label}: {spec.summary()} | {values:,} | {decode_ms(spec, jpeg, wav, text):.2f} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
