"""Statistics the report leans on: calibration (ECE, reliability curve) and bootstrap intervals.

Every number in the report comes with a 95% interval so a one-point "win" on 2,000 samples is
not read as a result. Bootstraps are seeded and vectorised (one index matrix per call), so a
rebuilt report gives the same intervals and costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve

from app.agreement import RULES_OUT_BELOW

ECE_BINS = 15
N_BOOT = 1000
SIGNIFICANT_LOSS = -0.01
"""A loss is significant when the whole 95% interval of the difference lies below -1 point."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for the large negative logits late fusion emits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def confidence_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The top-class probability and whether the top class is right, per row."""
    probs = softmax(logits.astype(np.float64))
    return probs.max(axis=1), (probs.argmax(axis=1) == labels)


def _bin_ids(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence, exactly as ``calibration_curve(strategy="uniform")``."""
    ids: np.ndarray = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence)
    return ids


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error with equal-width bins (Guo et al. 2017).

    scikit-learn has no multi-class ECE, so this is the weighted gap |accuracy - confidence|
    over bins; bins are the same as :func:`reliability`'s (``calibration_curve``, uniform).
    """
    if len(confidence) == 0:
        return float("nan")
    which = _bin_ids(confidence, bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    return round(float(np.abs(acc_sum - conf_sum).sum() / len(confidence)), 4)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Reliability-diagram points (mean confidence, accuracy, samples) of the non-empty bins."""
    if len(confidence) == 0:
        return {"confidence": [], "accuracy": [], "count": []}
    acc, conf = calibration_curve(correct.astype(int), confidence, n_bins=bins, strategy="uniform")
    counts = np.bincount(_bin_ids(confidence, bins), minlength=bins)
    return {
        "confidence": [round(float(c), 4) for c in conf],
        "accuracy": [round(float(a), 4) for a in acc],
        "count": [int(c) for c in counts[counts > 0]],
    }


def calibration(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """ECE, mean confidence, accuracy and the reliability curve of one set of predictions."""
    conf, correct = confidence_and_correct(logits, labels)
    return {
        "ece": ece(conf, correct),
        "confidence": round(float(conf.mean()), 4) if len(conf) else float("nan"),
        "accuracy": round(float(correct.mean()), 4) if len(conf) else float("nan"),
        "reliability": reliability(conf, correct),
    }


def _boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)), dtype=np.int32)
    means: np.ndarray = values[idx].mean(axis=1)
    return means


def bootstrap(values: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Mean of ``values`` (0/1 hits, or paired differences) with its 95% percentile interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"value": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    lo, hi = np.percentile(_boot_means(values, n_boot, seed), [2.5, 97.5])
    return {
        "value": round(float(values.mean()), 4),
        "ci": [round(float(lo), 4), round(float(hi), 4)],
        "n": len(values),
    }


def paired_difference(
    hits_a: np.ndarray, hits_b: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Accuracy of ``a`` minus that of ``b`` on the same samples, with a paired 95% interval.

    Resampling the per-sample difference keeps the pairing, so the interval is much tighter
    than two independent intervals would suggest. ``significant_loss`` marks an interval that
    lies entirely below -1 point.
    """
    out = bootstrap(hits_a.astype(np.float64) - hits_b.astype(np.float64), n_boot=n_boot, seed=seed)
    out["significant_loss"] = bool(out["n"] and out["ci"][1] < SIGNIFICANT_LOSS)
    return out


def donors(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """For every row, a random other row of a different class (None if there is one class only)."""
    out = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        mine, other = np.flatnonzero(labels == c), np.flatnonzero(labels != c)
        if len(other) == 0:
            return None
        out[mine] = rng.choice(other, size=len(mine))
    return out


def agreement_flags(alone: Sequence[np.ndarray], fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the server's ``agree: false``; and whether some modality merely names another label.

    ``alone``: each modality's single-modality probabilities ``[N, C]``; ``fused``: the fused
    answer ``[N]``. The flag is the server's rule (:data:`app.agreement.RULES_OUT_BELOW`): some
    modality alone gives the fused label less than that. The second rate is the flag's earlier
    definition (the opinions' labels are not all the same), kept for comparison.
    """
    rows = np.arange(len(fused))
    for_fused = np.stack([p[rows, fused] for p in alone], axis=1)
    labels = np.stack([p.argmax(axis=1) for p in alone], axis=1)
    flagged = np.asarray(np.any(for_fused < RULES_OUT_BELOW, axis=1))
    named = np.asarray(np.any(labels != labels[:, :1], axis=1))
    return flagged, named
