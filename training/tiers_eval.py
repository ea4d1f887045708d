"""Evaluation beyond the benchmark split: test tiers, calibration, modality conflicts, paired margins.

Run on the exported ONNX files with onnxruntime (what is measured is what is served), for every
model of a repository at once, because the margins against the unimodal baselines are paired:
the fusion and its baseline are scored on the very same samples, so the bootstrap of their
difference is tight. The result is a plain JSON-able dict that the pipeline stores in
``report.json``, so ``python -m training report`` redraws everything without the data.

Tiers (built-in data, :func:`training.data.tiers.load_tiers`): ``benchmark`` (the noisy test
split), ``clean``, ``unseen_speakers`` (voices held out of training) and ``people_images``
(dark-on-light, off-centre digits as people draw them). A user data set has only ``benchmark``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.media import MODALITIES
from training.data import MultimodalDataset
from training.evaluate import OnnxModel, subset_name
from training.fusion import FUSIONS, UNIMODAL
from training.metrics import (
    N_BOOT,
    agreement_flags,
    bootstrap,
    calibration,
    donors,
    paired_difference,
    softmax,
)
from training.train import SUBSETS

log = logging.getLogger(__name__)
TIERS = ("benchmark", "clean", "unseen_speakers", "people_images")
Arrays = dict[str, np.ndarray]


def load_eval_tiers(
    source: str,
    test: MultimodalDataset,
    *,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, MultimodalDataset]:
    """The tiers for ``source``: all four for the built-in digits, only the test split otherwise."""
    if source != "default":
        return {"benchmark": test}
    try:
        from training.data.tiers import load_tiers
    except ImportError:  # the tier builder is not installed in this checkout
        log.warning("training.data.tiers is missing: evaluating the benchmark tier only")
        return {"benchmark": test}
    tiers = load_tiers(seed=seed, limit=limit, cache_dir=cache_dir, progress=progress)
    return {name: tiers[name] for name in TIERS if name in tiers and len(tiers[name])}


def _arrays(ds: MultimodalDataset) -> Arrays:
    return {"image": np.asarray(ds.image), "audio": np.asarray(ds.audio), "text": np.asarray(ds.text)}


def _take(arrays: Arrays, rows: np.ndarray) -> Arrays:
    return {k: v[rows] for k, v in arrays.items()}


def _one_hot(modality: str) -> np.ndarray:
    return np.array([1.0 if m == modality else 0.0 for m in MODALITIES], np.float32)


class _ModelEval:
    """One model's numbers on every tier; keeps the per-sample hits the paired margins need."""

    def __init__(self, model_dir: Path, seed: int, n_boot: int) -> None:
        self.model = OnnxModel(model_dir)
        self.name = self.model.manifest.name
        self.fusion = str(self.model.manifest.fusion)
        self.mods = [str(m) for m in self.model.manifest.modalities]
        self.own = np.array([1.0 if m in self.mods else 0.0 for m in MODALITIES], np.float32)
        self.seed, self.n_boot = seed, n_boot
        self.subset_hits: dict[str, np.ndarray] = {}  # benchmark tier: hits on the rows with the subset
        self.subset_rows: dict[str, np.ndarray] = {}  # ... and those rows
        self.cache: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}  # one ONNX pass per mask

    def boot(self, hits: np.ndarray) -> dict[str, Any]:
        return bootstrap(hits, n_boot=self.n_boot, seed=self.seed)

    def run_subset(
        self, ds: MultimodalDataset, arrays: Arrays, subset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and row indices for the rows that have every modality of ``subset`` (memoised)."""
        key = (id(ds), subset.tobytes())
        if key not in self.cache:
            mask = np.asarray(ds.mask, np.float32) * subset
            rows = np.flatnonzero(mask.sum(axis=1) == subset.sum())
            self.cache[key] = self.model.logits(_take(arrays, rows), mask[rows]), rows
        return self.cache[key]

    def tier(self, name: str, ds: MultimodalDataset) -> dict[str, Any]:
        arrays, labels = _arrays(ds), np.asarray(ds.label)
        mask = np.asarray(ds.mask, np.float32) * self.own
        if (mask.sum(axis=1) == self.own.sum()).all():  # the usual case: the same pass as that subset
            logits, rows = self.run_subset(ds, arrays, self.own)
        else:
            rows = np.flatnonzero(mask.sum(axis=1) > 0)
            logits = self.model.logits(_take(arrays, rows), mask[rows])
        out: dict[str, Any] = {"accuracy": self.boot(logits.argmax(1) == labels[rows])}
        if name in ("benchmark", "clean"):
            out["calibration"] = calibration(logits, labels[rows])
        if name == "benchmark":
            out["subsets"], out["branches"] = self.subsets(ds, arrays, labels)
        if name == "unseen_speakers" and "audio" in self.mods:
            logits, rows = self.run_subset(ds, arrays, _one_hot("audio"))
            out["audio_only"] = self.boot(logits.argmax(1) == labels[rows])
        if name in ("people_images", "clean") and "image" in self.mods:
            logits, rows = self.run_subset(ds, arrays, _one_hot("image"))
            out["image_only"] = self.boot(logits.argmax(1) == labels[rows])
        if name == "clean" and self.fusion != "unimodal" and len(self.mods) == len(MODALITIES):
            out["conflict"] = self.conflict(ds, arrays, labels)
        if name != "benchmark":
            self.cache.clear()  # the benchmark's subset passes are kept for nothing else
        return out

    def subsets(
        self, ds: MultimodalDataset, arrays: Arrays, labels: np.ndarray
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Accuracy on each modality subset; a one-hot subset of a fusion is one of its branches."""
        subsets: dict[str, Any] = {}
        branches: dict[str, Any] = {}
        for subset in SUBSETS:
            s = np.asarray(subset, np.float32)
            if (s * (1 - self.own)).any():
                continue
            logits, rows = self.run_subset(ds, arrays, s)
            name = subset_name(subset)
            self.subset_hits[name], self.subset_rows[name] = logits.argmax(1) == labels[rows], rows
            subsets[name] = self.boot(self.subset_hits[name])
            if s.sum() == 1 and self.fusion != "unimodal":
                branches[name] = calibration(logits, labels[rows])
        return subsets, branches

    def conflict(self, ds: MultimodalDataset, arrays: Arrays, labels: np.ndarray) -> dict[str, Any]:
        """Swap one modality to another class's sample: whom does the answer follow?

        Also the agreement flag of the trust issue, by the server's own rule
        (:func:`training.metrics.agreement_flags`): does some modality alone rule the fused
        answer out? Measured on the clean agreeing samples and on the swapped ones. A masked
        modality's input is zeroed inside every fusion graph, so a swapped modality's opinion
        is the donor's own single-modality answer.
        """
        full = np.flatnonzero(np.asarray(ds.mask).sum(axis=1) == len(MODALITIES))
        ones = np.ones((len(full), len(MODALITIES)), np.float32)
        if len(full) == len(labels):  # every row complete: the one-hot passes are already cached
            passes = [self.run_subset(ds, arrays, _one_hot(m))[0] for m in MODALITIES]
        else:
            passes = [self.model.logits(_take(arrays, full), ones * _one_hot(m)) for m in MODALITIES]
        alone = [softmax(p.astype(np.float64)) for p in passes]
        arrays, labels = _take(arrays, full), labels[full]
        donor = donors(labels, np.random.default_rng([self.seed, 7]))
        if donor is None:
            return {}
        flagged, names_another = agreement_flags(alone, self.model.predict(arrays, ones))
        out: dict[str, Any] = {
            "clean_flagged": self.boot(flagged),
            "clean_names_another": self.boot(names_another),
            "swapped": {},
        }
        flags: list[tuple[np.ndarray, np.ndarray]] = []
        for i, m in enumerate(MODALITIES):
            pred = self.model.predict({**arrays, m: arrays[m][donor]}, ones)
            flags.append(agreement_flags([a[donor] if j == i else a for j, a in enumerate(alone)], pred))
            out["swapped"][m] = {
                "follow_agreeing": self.boot(pred == labels),
                "follow_swapped": self.boot(pred == labels[donor]),
                "flagged": self.boot(flags[-1][0]),
                "names_another": self.boot(flags[-1][1]),
            }
        out["swapped_flagged"] = self.boot(np.concatenate([f[0] for f in flags]))
        out["swapped_names_another"] = self.boot(np.concatenate([f[1] for f in flags]))
        out["follow_agreeing"] = _pool(out["swapped"], "follow_agreeing")
        out["follow_swapped"] = _pool(out["swapped"], "follow_swapped")
        return out


def _pool(swapped: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The mean over the three swaps (equal sizes, so the plain mean of the rates) and the worst."""
    values = [v[key]["value"] for v in swapped.values()]
    return {"value": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4)}


def _margins(evals: list[_ModelEval], seed: int, n_boot: int) -> dict[str, dict[str, Any]]:
    """Each fusion's subset accuracy minus the matching unimodal baseline's, paired per sample.

    One modality: that modality's baseline. Two: the better of the two baselines (on the
    benchmark tier). Both are scored on exactly the rows of the subset.
    """
    baselines = {e.mods[0]: e for e in evals if e.fusion == "unimodal"}
    out: dict[str, dict[str, Any]] = {}
    for e in (e for e in evals if e.fusion != "unimodal"):
        out[e.name] = {}
        for name, hits in e.subset_hits.items():
            mods = name.split("+")
            if len(mods) == len(MODALITIES) or not all(m in baselines for m in mods):
                continue
            ref = max((baselines[m] for m in mods), key=lambda b: float(b.subset_hits[b.mods[0]].mean()))
            ref_rows = ref.subset_rows[ref.mods[0]]  # sorted: every row that has the baseline's modality
            ref_hits = ref.subset_hits[ref.mods[0]][np.searchsorted(ref_rows, e.subset_rows[name])]
            diff = paired_difference(hits, ref_hits, n_boot=n_boot, seed=seed)
            out[e.name][name] = {"baseline": ref.name, **diff}
    return out


def _gap(evals: list[_ModelEval], seed: int, n_boot: int) -> dict[str, Any]:
    """Best fusion minus best unimodal baseline (benchmark, all three present), paired per sample."""
    full = subset_name([1] * len(MODALITIES))
    fusions = [e for e in evals if full in e.subset_hits]
    unimodal = [e for e in evals if e.fusion == "unimodal" and e.mods[0] in e.subset_hits]
    if not fusions or not unimodal:
        return {}
    best_f = max(fusions, key=lambda e: float(e.subset_hits[full].mean()))
    rows = best_f.subset_rows[full]

    def on_rows(e: _ModelEval) -> np.ndarray:
        m = e.mods[0]
        hits: np.ndarray = e.subset_hits[m][np.searchsorted(e.subset_rows[m], rows)]
        return hits

    best_u = max(unimodal, key=lambda e: float(on_rows(e).mean()))
    diff = paired_difference(best_f.subset_hits[full], on_rows(best_u), n_boot=n_boot, seed=seed)
    return {"fusion": best_f.name, "unimodal": best_u.name, **diff}


def headline(result: Mapping[str, Any]) -> dict[str, float]:
    """The few numbers a seed changes most, for the mean +- spread over seeds."""
    tiers = result["tiers"]
    row: dict[str, float] = {}
    for tier, t in tiers.items():
        row[f"{tier}_accuracy"] = t["accuracy"]["value"]
    if "benchmark" in tiers:
        row["benchmark_ece"] = tiers["benchmark"]["calibration"]["ece"]
    if "audio_only" in tiers.get("unseen_speakers", {}):
        row["unseen_audio_only"] = tiers["unseen_speakers"]["audio_only"]["value"]
    if tiers.get("clean", {}).get("conflict"):
        row["conflict_follow_agreeing"] = tiers["clean"]["conflict"]["follow_agreeing"]["value"]
    return row


def evaluate_repository(
    model_dirs: list[Path], tiers: Mapping[str, MultimodalDataset], *, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """Every model on every tier, plus the paired margins against the unimodal baselines."""
    evals: list[_ModelEval] = []
    models: dict[str, Any] = {}
    for d in model_dirs:
        e = _ModelEval(d, seed, n_boot)
        result: dict[str, Any] = {"fusion": e.fusion, "modalities": e.mods, "tiers": {}}
        for name, ds in tiers.items():
            result["tiers"][name] = e.tier(name, ds)
        result["headline"] = headline(result)
        models[e.name] = result
        evals.append(e)
        log.info("%s evaluated on tiers %s", e.name, list(tiers))
    order = {name: i for i, name in enumerate((*FUSIONS, *UNIMODAL))}
    models = dict(sorted(models.items(), key=lambda kv: order.get(kv[0], len(order))))
    for name, margins in _margins(evals, seed, n_boot).items():
        models[name]["margins"] = margins
    return {
        "tiers": {name: len(ds) for name, ds in tiers.items()},
        "seed": seed,
        "n_boot": n_boot,
        "models": models,
        "gap": _gap(evals, seed, n_boot),
    }


def evaluate_tiers(
    model_dirs: list[Path],
    source: str,
    test: MultimodalDataset,
    *,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The pipeline's entry point: load the tiers of ``source`` and evaluate every model on them."""
    tiers = load_eval_tiers(source, test, seed=seed, limit=limit, cache_dir=cache_dir, progress=progress)
    return evaluate_repository(model_dirs, tiers, seed=seed)
