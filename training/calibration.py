"""Temperature scaling, fitted on the validation split and folded into the model.

Why: a softmax trained with cross-entropy is over-confident on inputs unlike its training data
(the audio branches were 18-25% off), and late fusion weighs each modality by its confidence,
so confidences must mean what they say. One temperature per modality subset (a fusion answers
from 1, 2 or 3 modalities, and each is confident to a different degree) and, for late fusion,
one per branch before the branches are mixed. The temperatures are buffers of the model, so the
exported ONNX graph serves calibrated probabilities and the server needs no change.

ECE (expected calibration error): 15 equal-width confidence bins, the sample-weighted mean of
``|accuracy - mean confidence|``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from app.media import MODALITIES
from training.fusion import SUBSETS, UNIMODAL, Features
from training.train import cycled_masks, predict_logits

ECE_BINS = 15


def ece(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error of softmax(logits) against ``labels``."""
    if len(labels) == 0:
        return 0.0
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    right = (pred == labels).double()
    which = (conf * bins).long().clamp(max=bins - 1)
    total = torch.zeros(bins, dtype=torch.float64)
    for b in range(bins):
        sel = which == b
        if sel.any():
            total[b] = sel.sum() * (right[sel].mean() - conf[sel].mean()).abs()
    return float(total.sum() / len(labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)``.

    Golden-section search over log T in [-3, 3] (T from 0.05 to 20): the NLL is convex in 1/T,
    hence unimodal in log T; 40 steps narrow the bracket below 1e-7 and are deterministic.
    """
    if len(labels) == 0:
        return 1.0
    z = logits.double()
    picked = z.gather(1, labels.view(-1, 1)).squeeze(1)

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float((torch.logsumexp(z / t, dim=1) - picked / t).mean())

    lo, hi = -3.0, 3.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(40):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return round(math.exp((lo + hi) / 2.0), 4)


def _subset_rows(mask: torch.Tensor, subset: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that have every modality of ``subset``, and the subset as their mask."""
    s = torch.tensor(subset, dtype=mask.dtype)
    rows = torch.nonzero(((mask * s) == s).all(dim=1)).flatten()
    return rows, s.expand(len(rows), 3)


def calibrate(
    model: nn.Module, name: str, val: tuple[Features, torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    """Fit the model's temperatures on ``val`` (in place) and return what was fitted and the
    validation ECE before and after (subset-cycled masks for fusions, as in training)."""
    feats, mask, labels = val
    temperature = model.get_buffer("temperature")
    temperature.fill_(1.0)
    pooled = hasattr(model, "branch_temperature")  # late, gated: branches pooled as probabilities
    if pooled:
        model.get_buffer("branch_temperature").fill_(1.0)
    report: dict[str, Any] = {"method": "temperature scaling on val", "bins": ECE_BINS}
    if name in UNIMODAL:
        logits = predict_logits(model, feats, mask)
        t = fit_temperature(logits, labels)
        temperature.fill_(t)
        report |= {
            "temperature": t,
            "val_ece_before": ece(logits, labels),
            "val_ece_after": ece(logits / t, labels),
        }
        return _rounded(report)
    cycled = cycled_masks(mask)
    before = ece(predict_logits(model, feats, cycled), labels)
    branches = predict_logits(model, feats, torch.ones_like(mask), key="per_modality")  # [N, 3, C]
    branch: dict[str, dict[str, float]] = {}
    for i, modality in enumerate(MODALITIES):
        rows = torch.nonzero(mask[:, i] > 0).flatten()
        z, y = branches[rows, i], labels[rows]
        t = fit_temperature(z, y)
        branch[modality] = {"temperature": t, "val_ece_before": ece(z, y), "val_ece_after": ece(z / t, y)}
        if pooled:  # the branches' probabilities are mixed: calibrate them first
            model.get_buffer("branch_temperature")[i] = t
    temps = []
    for subset in SUBSETS:
        rows, sub_mask = _subset_rows(mask, subset)
        rows_feats = {k: v[rows] for k, v in feats.items()}
        temps.append(fit_temperature(predict_logits(model, rows_feats, sub_mask), labels[rows]))
    temperature.copy_(torch.tensor(temps))
    after = ece(predict_logits(model, feats, cycled), labels)
    subsets = {
        "+".join(m for m, on in zip(MODALITIES, s, strict=True) if on): t
        for s, t in zip(SUBSETS, temps, strict=True)
    }
    report |= {
        "temperature": subsets,
        "branches": branch,
        "branch_temperature_in_graph": pooled,
        "val_ece_before": before,
        "val_ece_after": after,
    }
    return _rounded(report)


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, dict):
            return {k: r(x) for k, x in v.items()}
        return v

    return {k: r(v) for k, v in report.items()}
