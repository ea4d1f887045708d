"""Train -> export -> evaluate -> report, for any set of models on any data set.

The report is rebuilt from the manifests of the latest version of every model in the
repository, so it always describes what would be served.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.contract import latest_version_dir
from app.manifest import DecodeParams, Manifest
from training import EPOCHS
from training.calibration import calibrate, ece
from training.data import MultimodalDataset, load_dataset
from training.data.digits import NOISE_LEVELS
from training.data.spec import SpecOverrides
from training.encoders import DIGITS
from training.evaluate import Evaluation, OnnxModel, SubsetPasses, evaluate_model, from_manifest
from training.export import export_model
from training.fusion import FUSIONS, UNIMODAL, Features
from training.graph import featurize
from training.online_noise import SHARE as ONLINE_SHARE
from training.online_noise import OnlineNoise
from training.prune import measure_latencies
from training.report import write_report
from training.tiers_eval import ModelTiers, evaluate_model_tiers, evaluate_tiers, load_eval_tiers
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


def online_noise(train: MultimodalDataset) -> OnlineNoise | None:
    """Online heavy noise for a training split that records its noise levels (the built-in
    digits: the benchmark's ranges), else None."""
    return OnlineNoise.for_split(train, NOISE_LEVELS, ONLINE_SHARE)


def calibration_rows(
    val: MultimodalDataset, val_t: tuple[Features, torch.Tensor, torch.Tensor], seed: int
) -> tuple[Features, torch.Tensor, torch.Tensor] | None:
    """Val as stored plus a copy of it raised to heavy noise, as :func:`online_noise` raises half
    of each training batch: the mix the model was trained on, so the temperatures fitted on it
    hold under heavy noise too. Measured on a first run with online noise (its models calibrated
    on val alone, then one more temperature fitted on this mix): benchmark ECE of gated 4.6 ->
    1.9%, text_only 5.7 -> 2.7%, late 2.5 -> 1.3%, audio_only 11.1 -> 9.0%, image_only 3.7 ->
    4.2%. None for data without noise levels."""
    heavy = OnlineNoise.for_split(val, NOISE_LEVELS, 1.0)
    if heavy is None:
        return None
    feats, mask, labels = val_t
    raised = heavy(feats, torch.arange(len(labels)), torch.Generator().manual_seed(seed))
    return (
        {k: torch.cat([feats[k], raised[k]]) for k in feats},
        torch.cat([mask, mask]),
        torch.cat([labels, labels]),
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
    noise: OnlineNoise | None = None,
    calibration_set: tuple[Features, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train ``name`` (its epoch multiplier applied) and fit its temperatures on val.

    Returns the model, the manifest's ``training`` record and the calibration: the one recipe
    that both ``train`` and ``seeds`` export, so the extra seeds are the same model as the served one.
    ``noise``: :func:`online_noise`'s for the training split; ``calibration_set``: what the
    temperatures are fitted on (default ``val_t``; see :func:`calibration_rows`).
    """
    cfg = TrainConfig(
        model=name,
        epochs=epochs * EPOCH_MULTIPLIER.get(name, 1),
        seed=seed,
        threads=threads,
        online_noise=noise.share if noise else 0.0,
    )
    model, info = train_model(cfg, n_classes, train_t, val_t, progress=progress, spec=spec, noise=noise)
    calibration = calibrate(model, name, val_t if calibration_set is None else calibration_set)
    if calibration_set is not None:
        calibration["method"] = "temperature scaling on val and its copy raised to heavy noise"
    training = {**cfg.to_dict(), **info, "data": source, "limit": limit, "calibration": calibration}
    return model, training, calibration


@dataclass
class _Context:
    """The data one training run shares between its models."""

    ds: MultimodalDataset
    train: MultimodalDataset
    val: MultimodalDataset
    test: MultimodalDataset
    train_t: tuple[Features, torch.Tensor, torch.Tensor]
    val_t: tuple[Features, torch.Tensor, torch.Tensor]
    test_t: tuple[Features, torch.Tensor, torch.Tensor]
    noise: OnlineNoise | None
    calibration_set: tuple[Features, torch.Tensor, torch.Tensor] | None
    src: DataSource | None = None
    _tiers: dict[str, MultimodalDataset] | None = None

    def tiers(self) -> dict[str, MultimodalDataset]:
        """The report's tiers of this data (loaded on first use). The benchmark tier is the test
        split itself when it holds the same rows, so a model's passes over it are made once."""
        if self._tiers is None:
            assert self.src is not None, "a context made by _context() knows its source"
            src = self.src
            tiers = load_eval_tiers(
                src.source,
                self.test,
                seed=src.seed,
                limit=src.limit,
                cache_dir=src.cache_dir,
                progress=src.progress,
            )
            if "benchmark" in tiers and _same_rows(tiers["benchmark"], self.test):
                tiers["benchmark"] = self.test
            self._tiers = tiers
        return self._tiers


def _same_rows(a: MultimodalDataset, b: MultimodalDataset) -> bool:
    """Whether two data sets hold the same inputs, masks and labels, row for row."""
    return all(
        np.array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k)))
        for k in ("label", "mask", "image", "audio", "text")
    )


@dataclass(frozen=True)
class DataSource:
    """Where a run's data comes from (picklable, so a worker process can load it too)."""

    source: str
    seed: int
    limit: int | None
    cache_dir: Path | None
    progress: bool
    spec: SpecOverrides | None


def load_splits(
    src: DataSource,
) -> tuple[MultimodalDataset, MultimodalDataset, MultimodalDataset, MultimodalDataset]:
    """``src``'s data set and its train, val and test splits (each must have rows)."""
    ds = load_dataset(
        src.source,
        seed=src.seed,
        limit=src.limit,
        cache_dir=src.cache_dir,
        progress=src.progress,
        spec=src.spec,
    )
    train, val, test = (ds.split_view(s) for s in ("train", "val", "test"))
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"data set {src.source!r} needs rows in train, val and test splits")
    return ds, train, val, test


def _context(src: DataSource) -> _Context:
    ds, train, val, test = load_splits(src)
    train_t, val_t = _tensors(train), _tensors(val)
    noise = online_noise(train)
    calibration_set = calibration_rows(val, val_t, src.seed) if noise else None
    return _Context(ds, train, val, test, train_t, val_t, _tensors(test), noise, calibration_set, src)


def _train_export(
    name: str,
    ctx: _Context,
    *,
    epochs: int,
    seed: int,
    threads: int,
    source: str,
    limit: int | None,
    progress: bool,
    out: Path,
    version: int | None,
) -> tuple[Path, str, ModelTiers]:
    """Train, calibrate, export and evaluate one model (side by side and on the report's tiers);
    returns its folder, a summary line and its tier numbers."""
    model, training, calibration = train_calibrated(
        name, len(ctx.ds.labels), ctx.train_t, ctx.val_t, epochs=epochs, seed=seed, threads=threads,
        source=source, limit=limit, progress=progress, spec=ctx.ds.spec, noise=ctx.noise,
        calibration_set=ctx.calibration_set,
    )  # fmt: skip
    test_ece = _test_ece(model, name, ctx.test_t)
    path = export_model(
        model,
        name=name,
        out=out,
        version=version,
        labels=ctx.ds.labels,
        training=training,
        data_fingerprint=ctx.ds.fingerprint,
        metrics={
            "calibration": {
                "val_ece_before": calibration["val_ece_before"],
                "val_ece_after": calibration["val_ece_after"],
                "test_ece": test_ece,
            }
        },
    )
    params = sum(p.numel() for p in model.parameters())
    passes = SubsetPasses(OnnxModel(path), ctx.test)  # shared by both evaluations
    evaluation = evaluate_model(
        path,
        ctx.test,
        params=params,
        train_seconds=float(training["train_seconds"]),
        seed=seed,
        passes=passes,
    )
    manifest = Manifest.read(path / "manifest.json")
    manifest.metrics = {**evaluation.metrics(), **manifest.metrics}
    manifest.write(path / "manifest.json")
    log.info("%s: test accuracy %.3f -> %s", name, evaluation.accuracy, path)
    line = (
        f"{name:>13}: test accuracy {100 * evaluation.accuracy:5.1f}%, ECE val "
        f"{100 * calibration['val_ece_before']:.1f}% -> {100 * calibration['val_ece_after']:.1f}%, "
        f"test {100 * test_ece:.1f}%  -> {path}"
    )
    return path, line, evaluate_model_tiers(path, ctx.tiers(), seed=seed, benchmark=passes)


_WORKER: list[tuple[DataSource, _Context]] = []
"""The data a worker process loaded last, kept for its next model (compared by value: a
``DataSource`` holds the CLI's spec options, a dict, so it cannot be a dict key)."""
COST = {
    "intermediate": 4,
    "late": 4,
    "gated": 4,
    "early": 3,
    "image_only": 2,
    "audio_only": 2,
    "text_only": 1,
}
"""Rough relative training time, so parallel jobs start the longest models first."""


def worker_context(src: DataSource) -> _Context:
    """``src``'s data in this process, loaded once for all the models a worker trains."""
    if not _WORKER or _WORKER[0][0] != src:
        _WORKER[:] = [(src, _context(src))]
    return _WORKER[0][1]


PARENT_POLL_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the process that started it is gone. A ``kill`` of the run
    (SIGTERM or SIGKILL, which reach only that process) would otherwise leave its workers
    training for minutes and writing into ``--out`` behind a later run's back."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for ``--jobs``: spawned, so each loads the cached data set itself; each
    exits when the run's process does (:func:`_exit_with_parent`)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def _in_worker(name: str, src: DataSource, train: dict[str, Any]) -> tuple[Path, str, ModelTiers]:
    """One model in a worker process."""
    torch.set_num_threads(int(train["threads"]))
    return _train_export(name, worker_context(src), **train)


def run(
    models: list[str],
    *,
    source: str = "default",
    epochs: int = EPOCHS,
    seed: int = 0,
    out: Path = Path("models"),
    version: int | None = None,
    limit: int | None = None,
    cache_dir: Path | None = None,
    threads: int = 1,
    jobs: int = 1,
    progress: bool = True,
    command: str = "",
    spec: SpecOverrides | None = None,
) -> list[Path]:
    """Train, export and evaluate each model, then rewrite the report; returns the version dirs.

    ``spec``: input-spec choices for a manifest source (see :mod:`training.data.spec`).
    ``jobs`` > 1 trains that many models at a time, each in its own process (spawned, so each
    loads the cached data set itself); every model is the same as when trained alone, since each
    is seeded and single-threaded on its own.
    """
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    src = DataSource(source, seed, limit, cache_dir, progress, spec)
    train_args: dict[str, Any] = {
        "epochs": epochs, "seed": seed, "threads": threads, "source": source, "limit": limit,
        "out": out, "version": version,
    }  # fmt: skip
    found: dict[str, Path] = {}
    done: dict[Path, ModelTiers] = {}  # each model's tier numbers, from the process that trained it
    if jobs > 1 and len(models) > 1:
        ds, train, val, test = load_splits(src)
        with spawn_pool(min(jobs, len(models))) as pool:
            ordered = sorted(models, key=lambda n: -COST.get(n, 4))
            futures = {
                pool.submit(_in_worker, n, replace(src, progress=False), {**train_args, "progress": False}): n
                for n in ordered
            }
            for future in as_completed(futures):
                path, line, done[path] = future.result()
                found[futures[future]] = path
                if progress:
                    print(line, flush=True)
    else:
        ctx = _context(src)
        ds, train, val, test = ctx.ds, ctx.train, ctx.val, ctx.test
        for name in models:
            path, line, done[path] = _train_export(name, ctx, progress=progress, **train_args)
            found[name] = path
            if progress:
                print(line)
    dirs = [found[name] for name in models]
    # Latency, only now that no model is training beside it; the models take turns, so a slow
    # phase of the machine is shared (evaluate_model leaves it to this step).
    measure_latencies(dirs)
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
        "jobs": jobs,
        "command": command or "python -m training train",
        # tiers, calibration, conflicts, paired margins: kept in report.json for rebuilt reports
        "evaluation": evaluate_tiers(
            latest_models(out),
            source,
            test,
            seed=seed,
            limit=limit,
            cache_dir=cache_dir,
            progress=progress,
            done=done,
        ),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    report(out, info_all)
    return dirs
