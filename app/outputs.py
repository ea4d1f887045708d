"""Model outputs -> friendly answers: softmax, top-k, per-modality contributions.

Contributions (when ``explain`` is asked) follow the model's manifest:

- ``leave_one_out``: for each modality present, the drop in the predicted class's probability
  when that modality is masked out (``p(pred | all) - p(pred | all but m)``). Positive = the
  modality supported the answer; negative = it argued against it. A sample with a single
  modality is compared with the uniform distribution (``p(pred) - 1/C``): removing the only
  evidence leaves nothing to prefer one class.
- ``gate_weights``: the model's own per-modality gate weights, renormalised over the modalities
  present so they sum to 1: the share of the fused representation each modality provided.
- ``none`` (unimodal baselines): no contributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.inputs import Layout
from app.manifest import Manifest
from app.media import MODALITIES

DIGITS = 6


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one sample (see ``docs/api.md``)."""

    model: str
    version: int
    label: str
    label_index: int
    probabilities: list[tuple[str, float]]
    modalities_used: list[str]
    modalities_missing: list[str]
    contributions: dict[str, float] | None
    explain_method: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one answer."""
        return {
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "label_index": self.label_index,
            "probabilities": [{"label": lab, "probability": p} for lab, p in self.probabilities],
            "modalities_used": self.modalities_used,
            "modalities_missing": self.modalities_missing,
            "contributions": self.contributions,
            "explain_method": self.explain_method,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def postprocess(
    manifest: Manifest,
    outputs: Mapping[str, np.ndarray],
    layout: Layout,
    *,
    top_k: int,
    explain: bool,
) -> list[Prediction]:
    """One :class:`Prediction` per sample, in request order."""
    n = len(layout.present)
    probs = softmax(outputs[manifest.logits_output])
    labels = manifest.labels
    k = min(top_k, len(labels))
    method = manifest.explain.method if explain else None
    gates = outputs[manifest.explain.output] if method == "gate_weights" and manifest.explain.output else None
    answers = []
    for i in range(n):
        p = probs[i]
        order = np.argsort(-p, kind="stable")[:k]
        best = int(order[0])
        present = layout.present[i]
        contributions: dict[str, float] | None = None
        if method == "leave_one_out":
            base = p[best]
            contributions = {
                m: round(
                    float(
                        base - (probs[layout.loo[i][m], best] if m in layout.loo[i] else 1.0 / len(labels))
                    ),
                    DIGITS,
                )
                for m in present
            }
        elif gates is not None:
            w = np.array([gates[i, MODALITIES.index(m)] for m in present], dtype=np.float64)
            total = w.sum()
            w = w / total if total > 0 else np.full(len(present), 1.0 / len(present))
            contributions = {m: round(float(x), DIGITS) for m, x in zip(present, w, strict=True)}
        answers.append(
            Prediction(
                model=manifest.name,
                version=manifest.version,
                label=labels[best],
                label_index=best,
                probabilities=[(labels[j], round(float(p[j]), DIGITS)) for j in order],
                modalities_used=present,
                modalities_missing=[m for m in manifest.modalities if m not in present],
                contributions=contributions,
                explain_method=method,
            )
        )
    return answers
