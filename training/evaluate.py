"""Side-by-side evaluation of exported models, with onnxruntime: what is measured is what is served.

Per model: clean test accuracy, accuracy on each of the 7 non-empty modality subsets,
robustness curves (accuracy as one modality gets noisier, the others clean), relative
robustness, parameter count, ONNX size, latency at batch 1 and 64 (one thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import Manifest
from app.media import MODALITIES
from training.data import MultimodalDataset
from training.data.noise import audio_noise, image_noise, text_noise
from training.prune import median_run_ms, single_thread_session
from training.train import SUBSETS

NOISE_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def subset_name(subset: tuple[int, int, int] | list[int]) -> str:
    """``(1, 0, 1)`` -> ``"image+text"``."""
    return "+".join(m for m, on in zip(MODALITIES, subset, strict=True) if on)


@dataclass
class Evaluation:
    """Everything the report says about one model."""

    name: str
    fusion: str
    modalities: list[str]
    accuracy: float
    subsets: dict[str, float]
    robustness: dict[str, list[float]]
    relative_robustness: dict[str, float]
    params: int
    onnx_bytes: int
    latency_ms: dict[str, float]
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The subset written into the manifest's ``metrics``."""
        return {
            "test_accuracy": self.accuracy,
            "subset_accuracy": self.subsets,
            "robustness": self.robustness,
            "relative_robustness": self.relative_robustness,
            "latency_ms": self.latency_ms,
            "params": self.params,
            "onnx_bytes": self.onnx_bytes,
            "train_seconds": self.train_seconds,
        }


class OnnxModel:
    """A single-threaded onnxruntime session fed from a data set's arrays."""

    def __init__(self, model_dir: Path) -> None:
        self.manifest = Manifest.read(model_dir / "manifest.json")
        self.path = model_dir / "model.onnx"
        self.session = single_thread_session(self.path)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def feeds(self, arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {name: arrays[name] for name in self.inputs if name != "mask"}
        if "mask" in self.inputs:
            feed["mask"] = mask.astype(np.float32)
        return feed

    def logits(self, arrays: dict[str, np.ndarray], mask: np.ndarray, batch: int = 500) -> np.ndarray:
        """Class logits ``[N, classes]``, run in chunks of ``batch`` rows."""
        n = len(mask)
        out = [np.zeros((0, len(self.manifest.labels)), np.float32)]
        for i in range(0, n, batch):
            chunk = {k: v[i : i + batch] for k, v in arrays.items()}
            out.append(self.session.run(["logits"], self.feeds(chunk, mask[i : i + batch]))[0])
        return np.concatenate(out)

    def predict(self, arrays: dict[str, np.ndarray], mask: np.ndarray, batch: int = 500) -> np.ndarray:
        """Predicted class per row."""
        return self.logits(arrays, mask, batch).argmax(axis=1)

    def latency_ms(self, arrays: dict[str, np.ndarray], batch: int, repeats: int = 50) -> float:
        """Median wall time of one session.run at ``batch`` rows."""
        rows = np.arange(batch) % len(next(iter(arrays.values())))  # repeat rows of a small test set
        feed = self.feeds({k: v[rows] for k, v in arrays.items()}, np.ones((batch, 3), np.float32))
        return median_run_ms(self.session, feed, repeats)


def from_manifest(manifest: Manifest, onnx_bytes: int) -> Evaluation:
    """Rebuild an evaluation from the metrics stored in a manifest (for the report)."""
    m = manifest.metrics
    return Evaluation(
        name=manifest.name,
        fusion=manifest.fusion,
        modalities=list(manifest.modalities),
        accuracy=m["test_accuracy"],
        subsets=m["subset_accuracy"],
        robustness=m["robustness"],
        relative_robustness=m["relative_robustness"],
        params=m["params"],
        onnx_bytes=onnx_bytes,
        latency_ms=m["latency_ms"],
        train_seconds=m["train_seconds"],
    )


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return round(float((pred == labels).mean()), 4) if len(labels) else float("nan")


def evaluate_model(
    model_dir: Path, test: MultimodalDataset, *, params: int, train_seconds: float, seed: int = 0
) -> Evaluation:
    """Evaluate one exported model on the test split."""
    model = OnnxModel(model_dir)
    mods = [str(m) for m in model.manifest.modalities]
    arrays = {"image": test.image, "audio": test.audio, "text": test.text}
    full = np.array([[1.0 if m in mods else 0.0 for m in MODALITIES]], np.float32) * test.mask
    present = full.sum(axis=1) > 0
    accuracy = _accuracy(model.predict(arrays, full)[present], test.label[present])

    subsets: dict[str, float] = {}
    for subset in SUBSETS:
        if any(on and m not in mods for m, on in zip(MODALITIES, subset, strict=True)):
            continue
        mask = test.mask * np.asarray(subset, np.float32)
        keep = mask.sum(axis=1) == sum(subset)  # rows that really have every modality of the subset
        subsets[subset_name(subset)] = _accuracy(
            model.predict({k: v[keep] for k, v in arrays.items()}, mask[keep]), test.label[keep]
        )

    robustness: dict[str, list[float]] = {}
    relative: dict[str, float] = {}
    noisers = {
        "image": lambda lvl, rng: image_noise(test.image, lvl, rng),
        "audio": lambda lvl, rng: audio_noise(test.audio, lvl, rng),
        "text": lambda lvl, rng: text_noise(list(test.texts), lvl, rng, test.spec.text_bytes),
    }
    for modality in mods:
        curve = []
        for level in NOISE_LEVELS:
            rng = np.random.default_rng([seed, int(level * 100), MODALITIES.index(modality)])
            noisy = dict(arrays)
            if level > 0:
                noisy[modality] = noisers[modality](level, rng)
            curve.append(_accuracy(model.predict(noisy, full)[present], test.label[present]))
        robustness[modality] = curve
        # MultiBench's relative robustness: the area under the accuracy-vs-noise curve (levels in [0, 1]).
        relative[modality] = round(float(np.trapezoid(curve, NOISE_LEVELS)), 4)

    latency = {f"batch_{b}": model.latency_ms(arrays, b) for b in (1, 64)}
    return Evaluation(
        name=model.manifest.name,
        fusion=model.manifest.fusion,
        modalities=[str(m) for m in mods],
        accuracy=accuracy,
        subsets=subsets,
        robustness=robustness,
        relative_robustness=relative,
        params=params,
        onnx_bytes=model.path.stat().st_size,
        latency_ms=latency,
        train_seconds=train_seconds,
    )
