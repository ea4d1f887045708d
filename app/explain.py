"""Answers you can trust: per-modality opinions, exact Shapley values, agreement and abstention.

Everything here is computed from extra rows of the same onnxruntime batch as the fused answer.
A *coalition* is a subset of a sample's present modalities, held as a bit set over
:data:`app.media.MODALITIES` (bit ``j`` = ``MODALITIES[j]``); its row is the sample with the
other modalities zeroed and masked out. One sample's coalition rows are made once
(:func:`app.inputs.assemble`) and shared by:

- **opinions**: the one-modality coalitions, i.e. what each present modality alone makes the
  model answer (calibrated like the fused answer, since it is the same graph);
- **Shapley values** (the default ``explain_method``): every coalition, empty one included (the
  all-zero mask), with at most 3 players so at most 8 rows. The value of a coalition is the log-
  probability of the fused answer's label; the values sum exactly to ``full - empty``;
- **leave-one-out** (``explain_method: "leave_one_out"``): the coalitions with one modality out.

The empty coalition's row is all zeros with an all-zero mask: a constant of the model file. Its
answer is kept per model file (:class:`EmptyCoalition`, keyed by the ONNX sha256 that the runtime
checks at load) after the first Shapley request, so later ones run one row fewer.

Models without a ``mask`` input (the unimodal baselines) add no rows: their one modality's opinion
is the answer itself. Agreement and abstention are in :mod:`app.agreement`; the JSON is in
``docs/api.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal, Protocol

import numpy as np

from app.agreement import DIGITS, agreement
from app.manifest import Manifest
from app.media import MODALITIES

ExplainMethod = Literal["shapley", "leave_one_out"]
EXPLAIN_METHODS: tuple[str, ...] = ("shapley", "leave_one_out")


def bit_set(modalities: Sequence[str]) -> int:
    """The coalition holding ``modalities``."""
    return sum(1 << MODALITIES.index(m) for m in modalities)


def members(coalition: int) -> list[str]:
    """The modalities of a coalition, in :data:`MODALITIES` order."""
    return [m for j, m in enumerate(MODALITIES) if coalition >> j & 1]


def shapley(value: Mapping[int, float], players: Sequence[int]) -> dict[int, float]:
    """Exact Shapley values of a game given on every coalition of ``players``.

    ``phi_i = sum over S not holding i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``.
    Exact (no sampling) because a request has at most three modalities: eight coalitions.

    Args:
        value: ``v(S)`` for every coalition ``S`` (a bit set) of the players, the empty one (0)
            included.
        players: the single-bit coalitions of the players.

    Returns:
        Each player's value; they sum to ``v(all) - v(empty)`` (efficiency).
    """
    n = len(players)
    phi = {}
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for group in combinations(others, size):
                s = sum(group)
                total += weight * (value[s | i] - value[s])
        phi[i] = total
    return phi


class EmptyCoalition:
    """The empty coalition's log-probabilities per model file, learnt from the first request that ran it.

    Keyed by name, version and ``onnx_sha256`` (checked against the file at load); a manifest
    without a sha256 is never cached. One row of 10 floats per model file ever served.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int, str], np.ndarray] = {}

    def get(self, manifest: Manifest) -> np.ndarray | None:
        """The cached row, if known."""
        return self._rows.get((manifest.name, manifest.version, manifest.onnx_sha256))

    def put(self, manifest: Manifest, log_probs: np.ndarray) -> None:
        """Remember the row (a copy), for a manifest that names its file's sha256."""
        if manifest.onnx_sha256:
            self._rows[(manifest.name, manifest.version, manifest.onnx_sha256)] = np.array(log_probs)


EMPTY = EmptyCoalition()


class PlanOptions(Protocol):
    """The predict options a plan reads (:class:`app.service.PredictOptions`)."""

    @property
    def explain(self) -> bool: ...
    @property
    def explain_method(self) -> ExplainMethod: ...
    @property
    def min_confidence(self) -> float | None: ...
    @property
    def abstain_on_conflict(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AnswerPlan:
    """What one predict request wants beyond the label, and so which extra rows it needs.

    Attributes:
        method: the contribution method, ``None`` without ``explain`` or for a model with no mask.
        explain: whether the answer carries contributions, opinions and agreement.
        opinions: whether the one-modality rows are needed (explain, or abstention on conflict).
        min_confidence: below this fused probability the answer abstains (0 = never).
        abstain_on_conflict: abstain when the present modalities' opinions disagree.
        masked: whether the model takes a ``mask`` (only then can coalitions be run).
        empty: the empty coalition's cached log-probabilities (Shapley), ``None`` = run its row.
    """

    method: ExplainMethod | None
    explain: bool
    opinions: bool
    min_confidence: float
    abstain_on_conflict: bool
    masked: bool
    empty: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        manifest: Manifest,
        *,
        explain: bool,
        method: ExplainMethod = "shapley",
        min_confidence: float = 0.0,
        abstain_on_conflict: bool = False,
    ) -> AnswerPlan:
        """The plan for one request to the model of ``manifest``."""
        masked = manifest.has_mask
        shapley = explain and masked and method == "shapley"
        return cls(
            method=method if explain and masked else None,
            explain=explain,
            opinions=masked and (explain or abstain_on_conflict),
            min_confidence=min_confidence,
            abstain_on_conflict=abstain_on_conflict,
            masked=masked,
            empty=EMPTY.get(manifest) if shapley else None,
        )

    @classmethod
    def of(cls, manifest: Manifest, options: PlanOptions, default_min_confidence: float) -> AnswerPlan:
        """The plan for a predict request's options, the server's default ``min_confidence`` filled in."""
        given = options.min_confidence
        return cls.build(
            manifest,
            explain=options.explain,
            method=options.explain_method,
            min_confidence=default_min_confidence if given is None else given,
            abstain_on_conflict=options.abstain_on_conflict,
        )

    @property
    def may_abstain(self) -> bool:
        """Whether an answer can come back uncertain under this plan."""
        return self.min_confidence > 0 or self.abstain_on_conflict

    @property
    def extra_rows(self) -> bool:
        """Whether any sample may need coalition rows (a plain request needs none)."""
        return self.method is not None or self.opinions

    def coalitions(self, present: Sequence[str]) -> set[int]:
        """The coalition rows one sample needs besides its full row (each once, shared by all uses)."""
        full = bit_set(present)
        singles = [1 << MODALITIES.index(m) for m in present]
        wanted: set[int] = set()
        if self.method == "shapley":
            wanted = {s for s in range(full + 1) if s & ~full == 0}
        elif self.method == "leave_one_out" and len(singles) > 1:
            wanted = {full & ~b for b in singles}
        if self.opinions:
            wanted.update(singles)
        wanted.discard(full)
        if self.empty is not None:
            wanted.discard(0)
        return wanted


def log_probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (finite even where a probability rounds to 0)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def explain_sample(
    plan: AnswerPlan,
    log_probs: np.ndarray,
    rows: Mapping[int, int],
    present: Sequence[str],
    labels: Sequence[str],
    best: int,
) -> dict[str, Any]:
    """Opinions, contributions, explanation and agreement for one sample.

    Args:
        plan: the request's plan.
        log_probs: log-probabilities of every row of the batch [rows, classes].
        rows: coalition -> row of this sample (its full coalition included).
        present: the sample's modalities.
        labels: the model's class names.
        best: the fused answer's class.

    Returns:
        ``opinions``, ``agreement``, ``contributions`` and ``explanation`` (each ``None`` when
        not computed), keyed as in the answer's JSON.
    """
    full = bit_set(present)
    out: dict[str, Any] = {"opinions": None, "agreement": None, "contributions": None, "explanation": None}
    if plan.opinions or not plan.masked:
        singles = {m: rows[1 << MODALITIES.index(m)] if len(present) > 1 else rows[full] for m in present}
        opinions = {m: _opinion(log_probs[r], labels, best) for m, r in singles.items()}
        out["opinions"] = opinions
        out["agreement"] = agreement(opinions, labels[best])
    if plan.method == "shapley":
        value = {s: float(log_probs[r, best]) for s, r in rows.items()}
        if 0 not in value:
            assert plan.empty is not None  # the plan left the empty row out because it knew it
            value[0] = float(plan.empty[best])
        phi = shapley(value, [1 << MODALITIES.index(m) for m in present])
        out["contributions"] = {m: round(phi[1 << MODALITIES.index(m)], DIGITS) for m in present}
        out["explanation"] = _explanation("shapley", "log_probability", labels[best], value[full], value[0])
    elif plan.method == "leave_one_out":
        p_full = math.exp(log_probs[rows[full], best])
        out["contributions"] = {
            m: round(p_full - _without(log_probs, rows, full, m, best, len(labels)), DIGITS) for m in present
        }
        out["explanation"] = _explanation("leave_one_out", "probability", labels[best], p_full, None)
    return out


def _without(log_probs: np.ndarray, rows: Mapping[int, int], full: int, m: str, best: int, c: int) -> float:
    """p(best) with ``m`` masked out; a lone modality is compared with the uniform answer 1/C."""
    rest = full & ~(1 << MODALITIES.index(m))
    return math.exp(log_probs[rows[rest], best]) if rest else 1.0 / c


def _explanation(method: str, target: str, label: str, full: float, empty: float | None) -> dict[str, Any]:
    return {
        "method": method,
        "target": target,
        "label": label,
        "full": round(full, DIGITS),
        "empty": None if empty is None else round(empty, DIGITS),
    }


def _opinion(log_probs: np.ndarray, labels: Sequence[str], best: int) -> dict[str, Any]:
    own = int(np.argmax(log_probs))
    return {
        "label": labels[own],
        "probability": round(math.exp(log_probs[own]), DIGITS),
        "fused_label_probability": round(math.exp(log_probs[best]), DIGITS),
    }
