"""Side-by-side evaluation of exported models, with onnxruntime: what is measured is what is served.

Per model: clean test accuracy, accuracy on each of the 7 non-empty modality subsets,
robustness curves (accuracy as one modality gets noisier, the others clean), relative
robustness, parameter count, ONNX size. Latency is not measured here but by the run once every
model is trained (:func:`training.prune.measure_latencies`): beside a training worker it would
measure the neighbour.
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
from training.prune import single_thread_session
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
    """Empty until the run measures it (``measure_latencies`` writes it into the manifest)."""
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The subset written into the manifest's ``metrics`` (latency only once measured)."""
        return {
            "test_accuracy": self.accuracy,
            "subset_accuracy": self.subsets,
            "robustness": self.robustness,
            "relative_robustness": self.relative_robustness,
            **({"latency_ms": self.latency_ms} if self.latency_ms else {}),
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


def take(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The ``rows`` of every array."""
    return {k: v[rows] for k, v in arrays.items()}


class SubsetPasses:
    """One model's logits on one data set, per modality subset, each pass run once.

    ``passes(subset)`` runs the model on the rows that have every modality of ``subset`` (a 0/1
    vector over ``MODALITIES``) with the rest masked out, and keeps the answer: the side-by-side
    evaluation and the report's tiers ask for the same subsets of the same test split.
    """

    def __init__(self, model: OnnxModel, ds: MultimodalDataset) -> None:
        self.model, self.ds = model, ds
        self.arrays = {
            "image": np.asarray(ds.image),
            "audio": np.asarray(ds.audio),
            "text": np.asarray(ds.text),
        }
        self.mask = np.asarray(ds.mask, np.float32)
        self._memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def serve(self, model_dir: Path, ds: MultimodalDataset) -> bool:
        """Whether these are the passes of the model in ``model_dir`` over ``ds``."""
        return self.ds is ds and self.model.path.resolve() == (model_dir / "model.onnx").resolve()

    def __call__(self, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and row indices of the rows that have every modality of ``subset``."""
        key = subset.tobytes()
        if key not in self._memo:
            mask = self.mask * subset
            rows = np.flatnonzero(mask.sum(axis=1) == subset.sum())
            self._memo[key] = self.model.logits(take(self.arrays, rows), mask[rows]), rows
        return self._memo[key]

    def present(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and row indices of the rows with any of the model's modalities ``own``, each
        with what it has of them (one pass: the ``own`` subset's when every row has them all)."""
        mask = self.mask * own
        if (mask.sum(axis=1) == own.sum()).all():
            return self(own)
        rows = np.flatnonzero(mask.sum(axis=1) > 0)
        return self.model.logits(take(self.arrays, rows), mask[rows]), rows


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
    model_dir: Path,
    test: MultimodalDataset,
    *,
    params: int,
    train_seconds: float,
    seed: int = 0,
    passes: SubsetPasses | None = None,
) -> Evaluation:
    """Evaluate one exported model on the test split. ``passes``: this model's passes over
    ``test``, to share with a later evaluation of the same split (made here if not given)."""
    if passes is None or not passes.serve(model_dir, test):
        passes = SubsetPasses(OnnxModel(model_dir), test)
    model = passes.model
    mods = [str(m) for m in model.manifest.modalities]
    arrays = passes.arrays
    own = np.array([1.0 if m in mods else 0.0 for m in MODALITIES], np.float32)
    full = own * passes.mask
    present = full.sum(axis=1) > 0
    logits, rows = passes.present(own)  # the rows of ``present``, in order
    clean = logits.argmax(axis=1)
    accuracy = _accuracy(clean, test.label[rows])

    subsets: dict[str, float] = {}
    for subset in SUBSETS:
        if any(on and m not in mods for m, on in zip(MODALITIES, subset, strict=True)):
            continue
        logits, rows = passes(np.asarray(subset, np.float32))
        subsets[subset_name(subset)] = _accuracy(logits.argmax(axis=1), test.label[rows])

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
            if level == 0:  # no noise drawn: the clean pass above
                curve.append(accuracy)
                continue
            noisy = {**arrays, modality: noisers[modality](level, rng)}
            curve.append(_accuracy(model.predict(noisy, full)[present], test.label[present]))
        robustness[modality] = curve
        # MultiBench's relative robustness: the area under the accuracy-vs-noise curve (levels in [0, 1]).
        relative[modality] = round(float(np.trapezoid(curve, NOISE_LEVELS)), 4)

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
        latency_ms={},
        train_seconds=train_seconds,
    )
