"""Do the modalities agree, and should the answer stand? (issue 12; JSON in ``docs/api.md``).

``agreement`` reads the per-modality opinions of :mod:`app.explain`; ``abstention`` turns a low
fused probability or a disagreement into an "uncertain" answer, with the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DIGITS = 6
RULES_OUT_BELOW = 0.1
"""A modality *rules out* the fused answer when, alone, it gives that label less than this
probability. Merely naming another label is not enough: on clean samples whose three modalities
show the same digit, one modality alone names another label in 7-10% of them (a hard sample, not
a conflict), but rules the answer out in 3.7-5.5% (late, gated, intermediate; the committed
models, ``python -m bench.agreement``), while a modality swapped to another class's sample rules
it out in 98.0-100% (docs/api.md)."""
LOW_CONFIDENCE = "low_confidence"
CONFLICT = "conflict"


def agreement(opinions: Mapping[str, Mapping[str, Any]], fused_label: str) -> dict[str, Any]:
    """Whether the opinions agree; who dissents from the fused answer, and by how much.

    ``agree`` is false when a present modality alone *rules out* the fused label (gives it less
    than :data:`RULES_OUT_BELOW`). ``majority`` is the label more than half of them name, else
    null. A *dissenter* is a modality whose own label is not the fused one; ``margin`` is how much
    more it believes its own label than the fused one (its probability of each, 0..1), and
    ``rules_out`` whether it is the kind of dissent that makes ``agree`` false.
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
            "rules_out": o["fused_label_probability"] < RULES_OUT_BELOW,
        }
        for m, o in opinions.items()
        if o["label"] != fused_label
    ]
    return {
        "agree": not any(d["rules_out"] for d in dissenters),
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
