"""Typed answers. Each keeps the server's JSON in ``raw`` so new fields are never out of reach."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fusion_client._exceptions import DecodeError


@dataclass(frozen=True, slots=True)
class ClassProbability:
    """One entry of the top-k list."""

    label: str
    probability: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one sample.

    Attributes:
        model: Name of the model that answered.
        version: Version of that model.
        label: The predicted label.
        label_index: Index of ``label`` in the model's label list.
        probabilities: The top-k labels, most probable first.
        modalities_used: The modalities the request carried.
        modalities_missing: The model's modalities the request did not carry.
        contributions: Per-modality contribution when ``explain=True``, else ``None``.
        explain_method: How ``contributions`` were computed (``leave_one_out``, ``gate_weights``).
        raw: The server's JSON for this sample.
    """

    model: str
    version: int
    label: str
    label_index: int
    probabilities: list[ClassProbability]
    modalities_used: list[str]
    modalities_missing: list[str]
    contributions: dict[str, float] | None
    explain_method: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Prediction:
        """Parse one answer of ``POST /v1/models/{name}/predict``."""
        with _decoding("prediction", data):
            contributions = data.get("contributions")
            return cls(
                model=str(data["model"]),
                version=int(data["version"]),
                label=str(data["label"]),
                label_index=int(data["label_index"]),
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
        explain: The explanation method (``leave_one_out``, ``gate_weights`` or ``none``).
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
