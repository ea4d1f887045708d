"""The model card (``models/<name>/<version>/manifest.json``): the contract between trainer and server.

The trainer writes it with :meth:`Manifest.write`; the server reads it with :meth:`Manifest.read`
and checks it against the ONNX session before serving. Both sides use this one schema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.media import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SAMPLES,
    DEFAULT_SIZE,
    MODALITIES,
)

SCHEMA_VERSION = 1
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
"""What a model name may be: lowercase letters, digits, ``_`` and ``-`` (also its directory name)."""
FusionKind = Literal["early", "intermediate", "late", "gated", "lowrank", "unimodal"]
DType = Literal["uint8", "float32", "int64", "bool"]


class TensorSpec(BaseModel):
    """One input or output of the ONNX graph. ``-1`` marks a dynamic dimension (the batch)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: DType
    shape: list[int]

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if not shape or any(d < -1 or d == 0 for d in shape):
            raise ValueError(f"shape must be a non-empty list of positive dims or -1, got {shape}")
        return shape


class DecodeParams(BaseModel):
    """The model's input spec: how raw media becomes its input tensors (see :mod:`app.media`).

    Chosen at training time and saved in the manifest; the decoder, the graph's input shapes and
    the metadata all follow it (docs/specs.md). Every field has the built-in digits' value as
    its default, so a manifest written before a field existed still reads as the digits' spec.
    """

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(default=DEFAULT_SIZE, ge=8, le=1024)
    """Side of the square image in pixels (pictures are scaled to fit, aspect kept, and padded)."""
    image_channels: Literal[1, 3] = 1
    """1: grey ``[B, size, size]``; 3: RGB ``[B, size, size, 3]``."""
    image_normalize: bool = True
    """Re-make each image MNIST-style (polarity, crop to the ink, re-centre); see docs/api.md.
    Grey images only."""
    sample_rate: int = Field(default=DEFAULT_SAMPLE_RATE, ge=4_000, le=48_000)
    audio_samples: int = Field(default=DEFAULT_SAMPLES, ge=1_000)
    """Window length in samples at ``sample_rate`` (longer clips keep their most energetic window)."""
    text_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=8, le=4096)
    """UTF-8 bytes kept of a text (cut at a character boundary, zero padded)."""
    audio_normalize: bool = True
    """The graph's log-mel front end removes each band's mean over the window (a stationary noise
    floor, the gain and a microphone's colouring go; right for speech). A class told apart by a
    steady sound, e.g. a tone's pitch, needs false. Read by training only: the server decodes
    audio the same way either way."""

    @model_validator(mode="after")
    def _grey_normalize(self) -> DecodeParams:
        if self.image_channels == 3 and self.image_normalize:
            raise ValueError(
                "image_normalize re-makes grey digits; an RGB spec (image_channels 3) needs false"
            )
        if self.audio_samples > 60 * self.sample_rate:
            raise ValueError(f"audio_samples {self.audio_samples} is over 60 s at {self.sample_rate} Hz")
        return self

    @property
    def audio_seconds(self) -> float:
        """The audio window in seconds."""
        return self.audio_samples / self.sample_rate

    def input_spec(self, name: str) -> TensorSpec:
        """The graph input ``name`` (``image``, ``audio``, ``text`` or ``mask``) this spec decodes to."""
        size = self.image_size
        shapes: dict[str, tuple[DType, list[int]]] = {
            "image": ("uint8", [-1, size, size] + ([3] if self.image_channels == 3 else [])),
            "audio": ("float32", [-1, self.audio_samples]),
            "text": ("uint8", [-1, self.text_bytes]),
            "mask": ("float32", [-1, len(MODALITIES)]),
        }
        dtype, shape = shapes[name]
        return TensorSpec(name=name, dtype=dtype, shape=shape)

    def describe(self) -> dict[str, Any]:
        """The spec for model metadata: every field, the window in seconds, and :meth:`summary`."""
        return {**self.model_dump(), "audio_seconds": self.audio_seconds, "summary": self.summary()}

    def summary(self) -> str:
        """``"28x28 grey, 1.0 s at 16000 Hz, 64 bytes"``: the spec in one line, for reports and logs."""
        colour = "grey" if self.image_channels == 1 else "RGB"
        return (
            f"{self.image_size}x{self.image_size} {colour}, {self.audio_seconds:g} s at "
            f"{self.sample_rate} Hz, {self.text_bytes} bytes"
        )


class Explain(BaseModel):
    """How per-modality contributions are computed for this model.

    ``gate_weights``: the model outputs per-modality softmax weights (output ``output``),
    renormalised over the present modalities. ``leave_one_out``: the server re-runs the model
    with each present modality masked and reports the drop in the predicted class's probability.

    ``coalitions``: the file (next to ``model.onnx``, with its ``coalitions_sha256``) of the
    model's coalition graph (``training/coalitions.py``): every modality subset of a sample in one
    pass of the encoders, which explanations use instead of extra rows of the model.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["gate_weights", "leave_one_out", "none"] = "leave_one_out"
    output: str | None = None
    coalitions: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+\.onnx$")
    coalitions_sha256: str = ""


class Manifest(BaseModel):
    """Everything a server, a client and a reader of the report need to know about one model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    fusion: FusionKind
    description: str = ""
    modalities: list[Literal["image", "audio", "text"]]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    logits_output: str = "logits"
    explain: Explain = Explain()
    decode: DecodeParams = DecodeParams()
    labels: list[str]
    metrics: dict[str, Any] = {}
    training: dict[str, Any] = {}
    data_fingerprint: str = ""
    onnx_sha256: str = ""
    created: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate input names: {names}")
        if not self.modalities:
            raise ValueError("a model needs at least one modality")
        for modality in self.modalities:
            if modality not in names:
                raise ValueError(f"modality {modality!r} has no input tensor of that name")
        unknown = [n for n in names if n not in (*MODALITIES, "mask")]
        if unknown:
            raise ValueError(f"inputs {unknown} are not one of {[*MODALITIES, 'mask']}")
        outs = {t.name: t for t in self.outputs}
        if self.logits_output not in outs:
            raise ValueError(f"logits output {self.logits_output!r} is not among the outputs")
        if outs[self.logits_output].shape[-1] != len(self.labels):
            raise ValueError(
                f"{len(self.labels)} labels but logits has {outs[self.logits_output].shape[-1]} classes"
            )
        if self.explain.method == "gate_weights":
            gates = outs.get(self.explain.output or "")
            if gates is None:
                raise ValueError(f"explain output {self.explain.output!r} is not among the outputs")
            if gates.shape != [-1, len(MODALITIES)]:  # one weight per modality, in mask order
                raise ValueError(
                    f"explain output {gates.name!r} has shape {gates.shape}; gate weights need "
                    f"[-1, {len(MODALITIES)}] (one column per modality: {list(MODALITIES)})"
                )
        return self

    @property
    def has_mask(self) -> bool:
        """Whether the graph takes the ``mask`` input (all fusion models do)."""
        return any(t.name == "mask" for t in self.inputs)

    def input(self, name: str) -> TensorSpec:
        """The spec of the input called ``name``."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Parse and validate a manifest file (raises ``ValueError`` with the reason)."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, path: Path) -> None:
        """Write the manifest as indented JSON, keys in schema order."""
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed (for ``onnx_sha256``)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_manifest_errors(exc: ValidationError, most: int = 3) -> str:
    """``"loc: what is wrong; ..."`` for a manifest that fails validation.

    Unlike ``str(exc)`` it quotes neither the offending values (the manifest's contents) nor
    pydantic's documentation links (its version): this text may reach clients as a reason.
    """
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for err in errors[:most]:
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    more = f"; and {len(errors) - most} more" if len(errors) > most else ""
    return "; ".join(parts) + more
