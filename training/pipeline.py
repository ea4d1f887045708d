"""Train -> export -> evaluate -> report, for any set of models on any data set.

The report is rebuilt from the manifests of the latest version of every model in the
repository, so it always describes what would be served.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.contract import latest_version_dir
from app.manifest import DecodeParams, Manifest
from training.calibration import calibrate, ece
from training.data import MultimodalDataset, load_dataset
from training.data.spec import SpecOverrides
from training.encoders import DIGITS
from training.evaluate import Evaluation, evaluate_model, from_manifest
from training.export import export_model
from training.fusion import FUSIONS, UNIMODAL, Features
from training.graph import featurize
from training.report import write_report
from training.tiers_eval import evaluate_tiers
from training.train import EPOCH_MULTIPLIER, TrainConfig, cycled_masks, predict_logits, train_model

log = logging.getLogger(__name__)
ALL_MODELS = (*FUSIONS, *UNIMODAL)


def resolve_models(spec: str) -> list[str]:
    """``all`` | ``fusions`` | ``baselines`` | a comma-separated list of model names."""
    groups = {"all": list(ALL_MODELS), "fusions": list(FUSIONS), "baselines": list(UNIMODAL)}
    if spec in groups:
        return groups[spec]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_MODELS]
    if unknown or not names:
        raise ValueError(
            f"unknown model(s) {unknown or spec!r}; choose from all, fusions, baselines, {ALL_MODELS}"
        )
    return names


def _tensors(ds: MultimodalDataset) -> tuple[Features, torch.Tensor, torch.Tensor]:
    feats = featurize(ds.image, ds.audio, ds.text, spec=ds.spec)
    return (
        feats,
        torch.from_numpy(np.asarray(ds.mask, np.float32)),
        torch.from_numpy(ds.label.astype(np.int64)),
    )


def _test_ece(model: torch.nn.Module, name: str, test: tuple[Features, torch.Tensor, torch.Tensor]) -> float:
    """ECE of the calibrated model on the test split (subset-cycled masks for fusions): the
    honest number, since the temperatures were fitted on val."""
    feats, mask, labels = test
    masks = mask if name in UNIMODAL else cycled_masks(mask)
    return round(ece(predict_logits(model, feats, masks), labels), 4)


def latest_models(out: Path) -> list[Path]:
    """``out/<name>/<highest version>`` for every model that has a manifest."""
    dirs = []
    for model_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        latest = latest_version_dir(model_dir)  # the server's reading of a version folder
        if latest is not None:
            dirs.append(latest)
    return dirs


def report(out: Path, info: dict[str, Any]) -> Path:
    """Rebuild ``REPORT.md`` from the latest manifests in ``out``.

    The last training run's facts (data, epochs, wall time) are kept in ``out/report.json`` so a
    report rebuilt later still states them; a wall time counts only if that run trained every
    model in the report.
    """
    saved = out / "report.json"
    if "wall_seconds" in info:
        kept = {p.parent.name for p in latest_models(out)} - set(info.get("models", []))
        if kept and saved.exists():  # models this run did not retrain keep the rewrite note
            earlier = json.loads(saved.read_text(encoding="utf-8"))
            if "optimized" in earlier:
                info = {**info, "optimized": earlier["optimized"]}
        saved.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    elif saved.exists():
        info = {**json.loads(saved.read_text(encoding="utf-8")), **info}
        if "optimized" in info:  # the files changed after training: later rebuilds say so too
            saved.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    order = {name: i for i, name in enumerate(ALL_MODELS)}
    evals: list[Evaluation] = []
    trained_on: dict[str, list[str]] = {}  # data fingerprint -> models trained on it
    for d in latest_models(out):
        manifest = Manifest.read(d / "manifest.json")
        if "test_accuracy" in manifest.metrics:
            evals.append(from_manifest(manifest, (d / "model.onnx").stat().st_size))
            trained_on.setdefault(manifest.data_fingerprint, []).append(manifest.name)
    if len(trained_on) > 1:
        info = {**info, "trained_on": trained_on}
    evals.sort(key=lambda e: order.get(e.name, len(order)))
    if not {e.name for e in evals} <= set(info.get("models", [])):
        info.pop("wall_seconds", None)  # that run did not train everything reported here
    return write_report(evals, out, info)


def train_calibrated(
    name: str,
    n_classes: int,
    train_t: tuple[Features, torch.Tensor, torch.Tensor],
    val_t: tuple[Features, torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    seed: int,
    threads: int,
    source: str,
    limit: int | None,
    progress: bool,
    spec: DecodeParams = DIGITS,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train ``name`` (its epoch multiplier applied) and fit its temperatures on val.

    Returns the model, the manifest's ``training`` record and the calibration: the one recipe
    that both ``train`` and ``seeds`` export, so the extra seeds are the same model as the served one.
    """
    cfg = TrainConfig(model=name, epochs=epochs * EPOCH_MULTIPLIER.get(name, 1), seed=seed, threads=threads)
    model, info = train_model(cfg, n_classes, train_t, val_t, progress=progress, spec=spec)
    calibration = calibrate(model, name, val_t)
    training = {**cfg.to_dict(), **info, "data": source, "limit": limit, "calibration": calibration}
    return model, training, calibration


def run(
    models: list[str],
    *,
    source: str = "default",
    epochs: int = 12,
    seed: int = 0,
    out: Path = Path("models"),
    version: int | None = None,
    limit: int | None = None,
    cache_dir: Path | None = None,
    threads: int = 1,
    progress: bool = True,
    command: str = "",
    spec: SpecOverrides | None = None,
) -> list[Path]:
    """Train, export and evaluate each model, then rewrite the report; returns the version dirs.

    ``spec``: input-spec choices for a manifest source (see :mod:`training.data.spec`).
    """
    start = time.perf_counter()
    ds = load_dataset(source, seed=seed, limit=limit, cache_dir=cache_dir, progress=progress, spec=spec)
    train, val, test = (ds.split_view(s) for s in ("train", "val", "test"))
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"data set {source!r} needs rows in train, val and test splits")
    train_t, val_t, test_t = _tensors(train), _tensors(val), _tensors(test)
    out.mkdir(parents=True, exist_ok=True)
    dirs = []
    for name in models:
        model, training, calibration = train_calibrated(
            name, len(ds.labels), train_t, val_t, epochs=epochs, seed=seed, threads=threads,
            source=source, limit=limit, progress=progress, spec=ds.spec,
        )  # fmt: skip
        test_ece = _test_ece(model, name, test_t)
        path = export_model(
            model,
            name=name,
            out=out,
            version=version,
            labels=ds.labels,
            training=training,
            data_fingerprint=ds.fingerprint,
            metrics={
                "calibration": {
                    "val_ece_before": calibration["val_ece_before"],
                    "val_ece_after": calibration["val_ece_after"],
                    "test_ece": test_ece,
                }
            },
        )
        params = sum(p.numel() for p in model.parameters())
        evaluation = evaluate_model(
            path, test, params=params, train_seconds=float(training["train_seconds"]), seed=seed
        )
        manifest = Manifest.read(path / "manifest.json")
        manifest.metrics = {**evaluation.metrics(), **manifest.metrics}
        manifest.write(path / "manifest.json")
        log.info("%s: test accuracy %.3f -> %s", name, evaluation.accuracy, path)
        if progress:
            print(
                f"{name:>13}: test accuracy {100 * evaluation.accuracy:5.1f}%, ECE val "
                f"{100 * calibration['val_ece_before']:.1f}% -> {100 * calibration['val_ece_after']:.1f}%, "
                f"test {100 * test_ece:.1f}%  -> {path}"
            )
        dirs.append(path)
    info_all = {
        "models": models,
        "data": source,
        "fingerprint": ds.fingerprint,
        "seed": seed,
        "epochs": epochs,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "threads": threads,
        "command": command or "python -m training train",
        # tiers, calibration, conflicts, paired margins: kept in report.json for rebuilt reports
        "evaluation": evaluate_tiers(
            latest_models(out), source, test, seed=seed, limit=limit, cache_dir=cache_dir, progress=progress
        ),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    report(out, info_all)
    return dirs
