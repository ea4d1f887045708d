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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.media import MODALITIES
from training.data import MultimodalDataset
from training.evaluate import OnnxModel, SubsetPasses, subset_name, take
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


def _one_hot(modality: str) -> np.ndarray:
    return np.array([1.0 if m == modality else 0.0 for m in MODALITIES], np.float32)


@dataclass
class ModelTiers:
    """One model's numbers on every tier, and the per-sample hits on the benchmark tier that the
    repository's paired margins need. Plain data: a ``--jobs`` worker evaluates the model it
    trained and hands this back to the run's process."""

    path: Path
    name: str
    fusion: str
    mods: list[str]
    result: dict[str, Any]
    subset_hits: dict[str, np.ndarray] = field(default_factory=dict)
    subset_rows: dict[str, np.ndarray] = field(default_factory=dict)


class _ModelEval:
    """One model's numbers on every tier; keeps the per-sample hits the paired margins need."""

    def __init__(self, model_dir: Path, seed: int, n_boot: int, model: OnnxModel | None = None) -> None:
        self.model = OnnxModel(model_dir) if model is None else model
        self.name = self.model.manifest.name
        self.fusion = str(self.model.manifest.fusion)
        self.mods = [str(m) for m in self.model.manifest.modalities]
        self.own = np.array([1.0 if m in self.mods else 0.0 for m in MODALITIES], np.float32)
        self.seed, self.n_boot = seed, n_boot
        self.subset_hits: dict[str, np.ndarray] = {}  # benchmark tier: hits on the rows with the subset
        self.subset_rows: dict[str, np.ndarray] = {}  # ... and those rows

    def boot(self, hits: np.ndarray) -> dict[str, Any]:
        return bootstrap(hits, n_boot=self.n_boot, seed=self.seed)

    def tier(self, name: str, passes: SubsetPasses) -> dict[str, Any]:
        """The numbers of one tier; ``passes``: this model's memoised passes over the tier's rows."""
        labels = np.asarray(passes.ds.label)
        logits, rows = passes.present(self.own)
        out: dict[str, Any] = {"accuracy": self.boot(logits.argmax(1) == labels[rows])}
        if name in ("benchmark", "clean"):
            out["calibration"] = calibration(logits, labels[rows])
        if name == "benchmark":
            out["subsets"], out["branches"] = self.subsets(passes, labels)
        if name == "unseen_speakers" and "audio" in self.mods:
            logits, rows = passes(_one_hot("audio"))
            out["audio_only"] = self.boot(logits.argmax(1) == labels[rows])
        if name in ("people_images", "clean") and "image" in self.mods:
            logits, rows = passes(_one_hot("image"))
            out["image_only"] = self.boot(logits.argmax(1) == labels[rows])
        if name == "clean" and self.fusion != "unimodal" and len(self.mods) == len(MODALITIES):
            out["conflict"] = self.conflict(passes, labels)
        return out

    def subsets(self, passes: SubsetPasses, labels: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        """Accuracy on each modality subset; a one-hot subset of a fusion is one of its branches."""
        subsets: dict[str, Any] = {}
        branches: dict[str, Any] = {}
        for subset in SUBSETS:
            s = np.asarray(subset, np.float32)
            if (s * (1 - self.own)).any():
                continue
            logits, rows = passes(s)
            name = subset_name(subset)
            self.subset_hits[name], self.subset_rows[name] = logits.argmax(1) == labels[rows], rows
            subsets[name] = self.boot(self.subset_hits[name])
            if s.sum() == 1 and self.fusion != "unimodal":
                branches[name] = calibration(logits, labels[rows])
        return subsets, branches

    def conflict(self, passes: SubsetPasses, labels: np.ndarray) -> dict[str, Any]:
        """Swap one modality to another class's sample: whom does the answer follow?

        Also the agreement flag of the trust issue, by the server's own rule
        (:func:`training.metrics.agreement_flags`): does some modality alone rule the fused
        answer out? Measured on the clean agreeing samples and on the swapped ones. A masked
        modality's input is zeroed inside every fusion graph, so a swapped modality's opinion
        is the donor's own single-modality answer.
        """
        arrays = passes.arrays
        full = np.flatnonzero(passes.mask.sum(axis=1) == len(MODALITIES))
        ones = np.ones((len(full), len(MODALITIES)), np.float32)
        if len(full) == len(labels):  # every row complete: these passes are already made
            alone_logits = [passes(_one_hot(m))[0] for m in MODALITIES]
            fused = passes(ones[0])[0].argmax(axis=1)
        else:
            alone_logits = [self.model.logits(take(arrays, full), ones * _one_hot(m)) for m in MODALITIES]
            fused = self.model.predict(take(arrays, full), ones)
        alone = [softmax(p.astype(np.float64)) for p in alone_logits]
        arrays, labels = take(arrays, full), labels[full]
        donor = donors(labels, np.random.default_rng([self.seed, 7]))
        if donor is None:
            return {}
        flagged, names_another = agreement_flags(alone, fused)
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


def _margins(evals: list[ModelTiers], seed: int, n_boot: int) -> dict[str, dict[str, Any]]:
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


def _gap(evals: list[ModelTiers], seed: int, n_boot: int) -> dict[str, Any]:
    """Best fusion minus best unimodal baseline (benchmark, all three present), paired per sample."""
    full = subset_name([1] * len(MODALITIES))
    fusions = [e for e in evals if full in e.subset_hits]
    unimodal = [e for e in evals if e.fusion == "unimodal" and e.mods[0] in e.subset_hits]
    if not fusions or not unimodal:
        return {}
    best_f = max(fusions, key=lambda e: float(e.subset_hits[full].mean()))
    rows = best_f.subset_rows[full]

    def on_rows(e: ModelTiers) -> np.ndarray:
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


def evaluate_model_tiers(
    model_dir: Path,
    tiers: Mapping[str, MultimodalDataset],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    benchmark: SubsetPasses | None = None,
) -> ModelTiers:
    """One model on every tier. ``benchmark``: passes already made over the benchmark tier's data
    set by this model (``evaluate_model``'s, in training), reused rather than run again."""
    bench = benchmark if benchmark is not None and benchmark.serve(model_dir, benchmark.ds) else None
    e = _ModelEval(model_dir, seed, n_boot, bench.model if bench is not None else None)
    result: dict[str, Any] = {"fusion": e.fusion, "modalities": e.mods, "tiers": {}}
    for name, ds in tiers.items():
        reuse = bench is not None and name == "benchmark" and bench.ds is ds
        passes = bench if reuse and bench is not None else SubsetPasses(e.model, ds)
        result["tiers"][name] = e.tier(name, passes)  # a tier's passes are dropped after it
    result["headline"] = headline(result)
    log.info("%s evaluated on tiers %s", e.name, list(tiers))
    return ModelTiers(model_dir, e.name, e.fusion, e.mods, result, e.subset_hits, e.subset_rows)


def evaluate_repository(
    model_dirs: list[Path],
    tiers: Mapping[str, MultimodalDataset],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    done: Mapping[Path, ModelTiers] | None = None,
) -> dict[str, Any]:
    """Every model on every tier, plus the paired margins against the unimodal baselines.

    ``done``: models already evaluated on these tiers with this seed (by ``--jobs`` workers,
    right after training), by folder; the rest are evaluated here."""
    ready = {Path(d).resolve(): e for d, e in (done or {}).items()}
    evals = [
        ready.get(Path(d).resolve()) or evaluate_model_tiers(d, tiers, seed=seed, n_boot=n_boot)
        for d in model_dirs
    ]
    order = {name: i for i, name in enumerate((*FUSIONS, *UNIMODAL))}
    models = {e.name: dict(e.result) for e in sorted(evals, key=lambda e: order.get(e.name, len(order)))}
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
    done: Mapping[Path, ModelTiers] | None = None,
) -> dict[str, Any]:
    """The pipeline's entry point: load the tiers of ``source`` and evaluate every model on them
    (``done``: those evaluated already, see :func:`evaluate_repository`)."""
    tiers = load_eval_tiers(source, test, seed=seed, limit=limit, cache_dir=cache_dir, progress=progress)
    return evaluate_repository(model_dirs, tiers, seed=seed, done=done)
