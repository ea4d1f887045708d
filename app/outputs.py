"""Model outputs -> friendly answers: softmax, top-k, opinions, contributions, abstention.

With ``explain`` (see :mod:`app.explain` and ``docs/api.md``):

- ``contributions``: exact Shapley values over the present modalities of the fused label's
  log-probability (default), or ``leave_one_out``: ``p(label | all) - p(label | all but m)``, a
  lone modality compared with the uniform answer ``1/C``;
- ``opinions`` and ``agreement``: what each present modality alone answers, and who dissents;
- ``explanation``: the method, its target, ``full`` and ``empty`` (Shapley: the values sum to
  ``full - empty``), and for gated models the model's own gate weights, renormalised over the
  present modalities (the share of the fused representation each one provided).

Unimodal baselines (no ``mask`` input) give no contributions (``explain_method: "none"``).
An answer abstains (``status: "uncertain"``, ``label: null``) under ``min_confidence`` or, with
``abstain_on_conflict``, when the opinions disagree; its probabilities stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.agreement import abstention
from app.explain import DIGITS, EMPTY, AnswerPlan, explain_sample, log_probabilities
from app.inputs import Layout
from app.manifest import Manifest
from app.media import MODALITIES


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one sample (see ``docs/api.md``); ``label`` is ``None`` when uncertain."""

    model: str
    version: int
    label: str | None
    label_index: int | None
    probabilities: list[tuple[str, float]]
    modalities_used: list[str]
    modalities_missing: list[str]
    contributions: dict[str, float] | None
    explain_method: str | None
    status: str = "ok"
    opinions: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    abstention: dict[str, Any] | None = None
    adjusted: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one answer."""
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "label": self.label,
            "label_index": self.label_index,
            "probabilities": [{"label": lab, "probability": p} for lab, p in self.probabilities],
            "modalities_used": self.modalities_used,
            "modalities_missing": self.modalities_missing,
            "contributions": self.contributions,
            "explain_method": self.explain_method,
            "opinions": self.opinions,
            "agreement": self.agreement,
            "explanation": self.explanation,
            "abstention": self.abstention,
            "adjusted": self.adjusted,
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
    plan: AnswerPlan,
) -> list[Prediction]:
    """One :class:`Prediction` per sample, in request order."""
    n = len(layout.present)
    logits = outputs[manifest.logits_output]
    probs = softmax(logits[:n])
    log_probs = log_probabilities(logits) if plan.explain or plan.opinions else None
    labels = manifest.labels
    k = min(top_k, len(labels))
    gates = outputs.get(manifest.explain.output or "") if manifest.explain.method == "gate_weights" else None
    answers = []
    for i in range(n):
        p = probs[i]
        order = np.argsort(-p, kind="stable")[:k]
        best = int(order[0])
        present = layout.present[i]
        extra: dict[str, Any] = {}
        if log_probs is not None:
            if plan.method == "shapley" and plan.empty is None and 0 in layout.rows[i]:
                EMPTY.put(manifest, log_probs[layout.rows[i][0]])
            extra = explain_sample(plan, log_probs, layout.rows[i], present, labels, best)
            if gates is not None and plan.explain:
                extra["explanation"]["gate_weights"] = _gate_weights(gates[i], present)
        agreed = extra["agreement"]["agree"] if extra.get("agreement") else None
        abstained = (
            abstention(
                float(p[best]),
                labels[best],
                agreed,
                min_confidence=plan.min_confidence,
                abstain_on_conflict=plan.abstain_on_conflict,
            )
            if plan.may_abstain
            else None
        )
        answers.append(
            Prediction(
                model=manifest.name,
                version=manifest.version,
                label=None if abstained else labels[best],
                label_index=None if abstained else best,
                probabilities=[(labels[j], round(float(p[j]), DIGITS)) for j in order],
                modalities_used=present,
                modalities_missing=[m for m in manifest.modalities if m not in present],
                contributions=extra.get("contributions"),
                explain_method=(plan.method or "none") if plan.explain else None,
                status="uncertain" if abstained else "ok",
                opinions=extra.get("opinions"),
                agreement=extra.get("agreement"),
                explanation=extra.get("explanation"),
                abstention=abstained,
                adjusted=layout.adjusted[i] if layout.adjusted else None,
            )
        )
    return answers


def _gate_weights(row: np.ndarray, present: list[str]) -> dict[str, float]:
    """The gate weights of the present modalities, renormalised to sum to 1."""
    w = np.array([row[MODALITIES.index(m)] for m in present], dtype=np.float64)
    total = w.sum()
    w = w / total if total > 0 else np.full(len(present), 1.0 / len(present))
    return {m: round(float(x), DIGITS) for m, x in zip(present, w, strict=True)}
