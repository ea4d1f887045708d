"""Do the modalities agree, and should the answer stand? (issue 12; JSON in ``docs/api.md``).

``agreement`` reads the per-modality opinions of :mod:`app.explain`; ``abstention`` turns a low
fused probability or a disagreement into an "uncertain" answer, with the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DIGITS = 6
LOW_CONFIDENCE = "low_confidence"
CONFLICT = "conflict"


def agreement(opinions: Mapping[str, Mapping[str, Any]], fused_label: str) -> dict[str, Any]:
    """Whether the opinions agree; who dissents from the fused answer, and by how much.

    ``agree`` is true when every present modality alone names the same label (the flag of the
    report's conflict table). ``majority`` is the label more than half of them name, else null.
    A *dissenter* is a modality whose own label is not the fused one; ``margin`` is how much more
    it believes its own label than the fused one (its probability of each, 0..1).
    """
    names = [o["label"] for o in opinions.values()]
    counts = {label: names.count(label) for label in names}
    top = max(counts, key=lambda label: counts[label])
    dissenters = [
        {
            "modality": m,
            "label": o["label"],
            "probability": o["probability"],
            "fused_label_probability": o["fused_label_probability"],
            "margin": round(o["probability"] - o["fused_label_probability"], DIGITS),
        }
        for m, o in opinions.items()
        if o["label"] != fused_label
    ]
    return {
        "agree": len(counts) == 1,
        "majority": top if 2 * counts[top] > len(names) else None,
        "dissenters": dissenters,
    }


def abstention(
    confidence: float, label: str, agreed: bool | None, *, min_confidence: float, abstain_on_conflict: bool
) -> dict[str, Any] | None:
    """Why the answer is "uncertain", or ``None`` when it stands.

    Reasons, in this order: ``low_confidence`` (the fused probability is below
    ``min_confidence``), ``conflict`` (``abstain_on_conflict`` and the opinions disagree).
    """
    reasons = []
    if confidence < min_confidence:
        reasons.append(LOW_CONFIDENCE)
    if abstain_on_conflict and agreed is False:
        reasons.append(CONFLICT)
    if not reasons:
        return None
    said = []
    if LOW_CONFIDENCE in reasons:
        said.append(f"the best label {label!r} has p={confidence:.3f} < min_confidence {min_confidence:g}")
    if CONFLICT in reasons:
        said.append("the modalities' own answers disagree")
    return {
        "reasons": reasons,
        "message": "; ".join(said),
        "label": label,
        "confidence": round(confidence, DIGITS),
        "min_confidence": min_confidence,
    }
