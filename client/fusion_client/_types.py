"""Typed answers. Each keeps the server's JSON in ``raw`` so new fields are never out of reach."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fusion_client._exceptions import DecodeError
from fusion_client._specs import Adjustment, InputSpec, parse_adjusted


@dataclass(frozen=True, slots=True)
class ClassProbability:
    """One entry of the top-k list."""

    label: str
    probability: float


@dataclass(frozen=True, slots=True)
class Opinion:
    """What one modality alone makes the model answer (``explain`` or ``abstain_on_conflict``).

    Attributes:
        label: Its own label.
        probability: Its probability of its own label.
        fused_label_probability: Its probability of the fused answer's label.
    """

    label: str
    probability: float
    fused_label_probability: float


@dataclass(frozen=True, slots=True)
class Dissent:
    """A modality whose own label is not the fused answer's; ``margin`` = how strongly it dissents,
    ``rules_out`` = alone it gives the fused label so little probability that ``agree`` is false."""

    modality: str
    label: str
    probability: float
    fused_label_probability: float
    margin: float
    rules_out: bool = False


@dataclass(frozen=True, slots=True)
class Agreement:
    """Whether the present modalities' own answers agree.

    Attributes:
        agree: No present modality alone rules the fused answer out (see :class:`Dissent`).
        majority: The label more than half of them name, else ``None``.
        dissenters: The modalities whose own label differs from the fused answer.
    """

    agree: bool
    majority: str | None
    dissenters: list[Dissent]


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``contributions`` measure.

    Attributes:
        method: ``shapley`` or ``leave_one_out``.
        target: ``log_probability`` (Shapley) or ``probability`` (leave-one-out) of ``label``.
        label: The fused label being explained.
        full: The target with every present modality.
        empty: Shapley: the target with none; the contributions sum to ``full - empty``.
        gate_weights: Gated models: the gate's weights over the present modalities.
    """

    method: str
    target: str
    label: str
    full: float
    empty: float | None
    gate_weights: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Abstention:
    """Why an answer is ``uncertain``.

    Attributes:
        reasons: ``low_confidence`` and/or ``conflict``.
        message: The reasons in words.
        label: The label the model would have given.
        confidence: That label's probability.
        min_confidence: The threshold that applied.
    """

    reasons: list[str]
    message: str
    label: str
    confidence: float
    min_confidence: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one sample.

    Attributes:
        model: Name of the model that answered.
        version: Version of that model.
        label: The predicted label; ``None`` when the answer abstained (``status == "uncertain"``).
        label_index: Index of ``label`` in the model's label list (``None`` with it).
        probabilities: The top-k labels, most probable first (kept when uncertain).
        modalities_used: The modalities the request carried.
        modalities_missing: The model's modalities the request did not carry.
        contributions: Per-modality contribution when ``explain=True``, else ``None``.
        explain_method: How ``contributions`` were computed (``shapley``, ``leave_one_out``, ``none``).
        status: ``ok``, or ``uncertain`` when the answer abstained (see ``abstention``).
        opinions: What each present modality alone answers.
        agreement: Whether those opinions agree, and who dissents.
        explanation: What ``contributions`` measure.
        abstention: Why the answer is uncertain, else ``None``.
        adjusted: Per modality the server had to cut, resize or resample to the model's input
            spec, what it did; ``None`` when every payload fitted as sent.
        raw: The server's JSON for this sample.
    """

    model: str
    version: int
    label: str | None
    label_index: int | None
    probabilities: list[ClassProbability]
    modalities_used: list[str]
    modalities_missing: list[str]
    contributions: dict[str, float] | None
    explain_method: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    status: str = "ok"
    opinions: dict[str, Opinion] | None = None
    agreement: Agreement | None = None
    explanation: Explanation | None = None
    abstention: Abstention | None = None
    adjusted: dict[str, Adjustment] | None = None

    @property
    def uncertain(self) -> bool:
        """Whether the server abstained instead of giving a label."""
        return self.status == "uncertain"

    @classmethod
    def from_json(cls, data: Any) -> Prediction:
        """Parse one answer of ``POST /v1/models/{name}/predict``."""
        with _decoding("prediction", data):
            contributions = data.get("contributions")
            label, index = data.get("label"), data.get("label_index")
            return cls(
                model=str(data["model"]),
                version=int(data["version"]),
                label=None if label is None else str(label),
                label_index=None if index is None else int(index),
                probabilities=[
                    ClassProbability(str(p["label"]), float(p["probability"])) for p in data["probabilities"]
                ],
                modalities_used=[str(m) for m in data.get("modalities_used", [])],
                modalities_missing=[str(m) for m in data.get("modalities_missing", [])],
                contributions=(
                    None if contributions is None else {str(k): float(v) for k, v in contributions.items()}
                ),
                explain_method=data.get("explain_method"),
                raw=data,
                status=str(data.get("status", "ok")),
                opinions=_opinions(data.get("opinions")),
                agreement=_agreement(data.get("agreement")),
                explanation=_explanation(data.get("explanation")),
                abstention=_abstention(data.get("abstention")),
                adjusted=parse_adjusted(data.get("adjusted")),
            )


def _opinions(data: Any) -> dict[str, Opinion] | None:
    if data is None:
        return None
    return {
        str(m): Opinion(str(o["label"]), float(o["probability"]), float(o["fused_label_probability"]))
        for m, o in data.items()
    }


def _agreement(data: Any) -> Agreement | None:
    if data is None:
        return None
    dissenters = [
        Dissent(
            modality=str(d["modality"]),
            label=str(d["label"]),
            probability=float(d["probability"]),
            fused_label_probability=float(d["fused_label_probability"]),
            margin=float(d["margin"]),
            rules_out=bool(d.get("rules_out", False)),
        )
        for d in data.get("dissenters", [])
    ]
    return Agreement(bool(data["agree"]), _optional_str(data.get("majority")), dissenters)


def _explanation(data: Any) -> Explanation | None:
    if data is None:
        return None
    empty, gates = data.get("empty"), data.get("gate_weights")
    return Explanation(
        method=str(data["method"]),
        target=str(data["target"]),
        label=str(data["label"]),
        full=float(data["full"]),
        empty=None if empty is None else float(empty),
        gate_weights=None if gates is None else {str(k): float(v) for k, v in gates.items()},
    )


def _abstention(data: Any) -> Abstention | None:
    if data is None:
        return None
    return Abstention(
        reasons=[str(r) for r in data["reasons"]],
        message=str(data.get("message", "")),
        label=str(data["label"]),
        confidence=float(data["confidence"]),
        min_confidence=float(data["min_confidence"]),
    )


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One entry of ``GET /v1/models``."""

    name: str
    versions: list[int]
    latest: int
    fusion: str | None
    modalities: list[str]
    ready: bool
    provider: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> ModelSummary:
        """Parse one entry of the model list."""
        with _decoding("model summary", data):
            return cls(
                name=str(data["name"]),
                versions=[int(v) for v in data["versions"]],
                latest=int(data["latest"]),
                fusion=_optional_str(data.get("fusion")),
                modalities=[str(m) for m in data["modalities"]],
                ready=bool(data.get("ready", False)),
                provider=data.get("provider"),
                raw=data,
            )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The card of one model version (``GET /v1/models/{name}[/versions/{v}]``).

    Attributes:
        modalities: The modalities the model accepts, in the model's order.
        formats: Accepted media formats per modality (``{"image": ["png", "jpeg", ...]}``).
        explain: predict's default explanation method (``shapley``, or ``none`` for a baseline).
        explain_methods: The ``explain_method`` values predict takes (empty for a baseline).
        gate_weights: Whether explained answers also carry the model's gate weights.
        spec: The input spec (image size and channels, audio rate and seconds, text bytes);
            ``None`` from a server that does not report one.
        raw: The full card, including tensor specs (``inputs``, ``outputs``) and ``metrics``.
    """

    name: str
    version: int
    versions: list[int]
    fusion: str | None
    description: str
    modalities: list[str]
    formats: dict[str, list[str]]
    labels: list[str]
    provider: str | None
    ready: bool
    explain: str | None
    metrics: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)
    explain_methods: list[str] = field(default_factory=list)
    gate_weights: bool = False
    spec: InputSpec | None = None

    @classmethod
    def from_json(cls, data: Any) -> ModelInfo:
        """Parse a model card."""
        with _decoding("model card", data):
            modalities: Mapping[str, Any] = data["modalities"]
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                versions=[int(v) for v in data.get("versions", [data["version"]])],
                fusion=_optional_str(data.get("fusion")),
                description=str(data.get("description", "")),
                modalities=list(modalities),
                formats={m: [str(f) for f in (s or {}).get("formats", [])] for m, s in modalities.items()},
                labels=[str(label) for label in data["labels"]],
                provider=data.get("provider"),
                ready=bool(data.get("ready", False)),
                explain=data.get("explain"),
                metrics=dict(data.get("metrics") or {}),
                raw=data,
                explain_methods=[str(m) for m in data.get("explain_methods") or []],
                gate_weights=bool(data.get("gate_weights", False)),
                spec=InputSpec.from_json(data.get("spec")),
            )


def _optional_str(value: Any) -> str | None:
    """A string field the server may send as null (a model whose card could not be read)."""
    return None if value is None else str(value)


@contextmanager
def _decoding(what: str, data: Any) -> Iterator[None]:
    """Turn a missing or mistyped field into :class:`DecodeError` naming what was being read."""
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object for a {what}, got {type(data).__name__}")
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"unexpected {what} from the server ({type(exc).__name__}: {exc})") from exc
