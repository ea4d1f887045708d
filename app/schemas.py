"""Pydantic models of the friendly API: the request body (parsed once, from bytes) and the answers.

Arrays are typed ``Any`` on purpose: a clip of 16,000 floats is handed to numpy in one call
instead of being validated element by element; :mod:`app.inputs` checks them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid")
_ARRAY_SCHEMA: dict[str, Any] = {"type": "array", "items": {}}


class Options(BaseModel):
    """Per-request options."""

    model_config = _STRICT

    top_k: int = Field(
        default=3, ge=1, le=1000, description="How many labels to return (clamped to the label count)."
    )
    explain: bool = Field(
        default=False, description="Return per-modality contributions (costs extra rows, see docs)."
    )
    version: int | None = Field(
        default=None, ge=1, description="Model version; default: the newest loaded one."
    )
    explain_method: Literal["shapley", "leave_one_out"] = Field(
        default="shapley", description="How explain computes contributions (see docs/api.md)."
    )
    min_confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Answer 'uncertain' (no label) below this probability; default: the server's "
        "FUSION_MIN_CONFIDENCE (0 = never).",
    )
    abstain_on_conflict: bool = Field(
        default=False, description="Answer 'uncertain' when the modalities' own answers disagree."
    )


class ImageInput(BaseModel):
    """An image: base64 of a PNG/JPEG/... file, or an H x W (x C) array (ints 0..255 or floats 0..1)."""

    model_config = _STRICT

    b64: str | None = Field(default=None, description="Base64 of the image file's bytes.")
    array: Any = Field(
        default=None, json_schema_extra=_ARRAY_SCHEMA, description="[H, W] or [H, W, C] numbers."
    )

    @model_validator(mode="after")
    def _one(self) -> ImageInput:
        if (self.b64 is None) == (self.array is None):
            raise ValueError("give exactly one of 'b64' or 'array'")
        return self


class AudioInput(BaseModel):
    """A clip: base64 of a WAV/FLAC/OGG file, or an array of samples in [-1, 1] with its rate."""

    model_config = _STRICT

    b64: str | None = Field(default=None, description="Base64 of the audio file's bytes.")
    array: Any = Field(
        default=None, json_schema_extra=_ARRAY_SCHEMA, description="[N] or [N, channels] floats."
    )
    sample_rate: int | None = Field(
        default=None, ge=1, description="Sample rate of 'array' in Hz (required with it)."
    )

    @model_validator(mode="after")
    def _one(self) -> AudioInput:
        if (self.b64 is None) == (self.array is None):
            raise ValueError("give exactly one of 'b64' or 'array'")
        if self.array is not None and self.sample_rate is None:
            raise ValueError("'sample_rate' is required with 'array'")
        if self.b64 is not None and self.sample_rate is not None:
            raise ValueError("'sample_rate' goes only with 'array' (a file carries its own rate)")
        return self


class Instance(BaseModel):
    """One sample: any non-empty subset of the modalities."""

    model_config = _STRICT

    image: ImageInput | None = None
    audio: AudioInput | None = None
    text: str | None = Field(default=None, description="The text (any language, NFC-normalised, UTF-8).")


class PredictRequest(Instance):
    """One sample at the top level, or several in ``instances`` (not both)."""

    instances: list[Instance] | None = Field(default=None, description="Several samples, answered in order.")
    options: Options = Field(default_factory=lambda: Options())

    @model_validator(mode="after")
    def _not_both(self) -> PredictRequest:
        if self.instances is not None and (self.image or self.audio or self.text is not None):
            raise ValueError("send either one sample (image/audio/text) or 'instances', not both")
        return self


# -- answers (documentation and tests; the routes build plain dicts for speed) ------------------


class ErrorBody(BaseModel):
    """Every error: what is wrong, naming the field where there is one, and the request's id.

    The id is also the ``X-Request-ID`` header; the server log has the details under it.
    """

    error: str
    request_id: str | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI ``responses`` for these error statuses, all with the one error body."""
    return {code: {"model": ErrorBody} for code in codes}


class LabelProbability(BaseModel):
    label: str
    probability: float


class Opinion(BaseModel):
    """What one modality alone makes the model answer."""

    label: str
    probability: float = Field(description="Its probability of its own label.")
    fused_label_probability: float = Field(description="Its probability of the fused answer's label.")


class Dissent(BaseModel):
    """A modality whose own label is not the fused answer's."""

    modality: str
    label: str
    probability: float
    fused_label_probability: float
    margin: float = Field(description="probability - fused_label_probability: how strongly it dissents.")
    rules_out: bool = Field(
        description="Alone it gives the fused label under 10% probability: this is what makes agree false."
    )


class Agreement(BaseModel):
    """Whether the present modalities' own answers agree."""

    agree: bool = Field(description="No present modality alone rules the fused label out (see Dissent).")
    majority: str | None = Field(description="The label more than half of them name, else null.")
    dissenters: list[Dissent]


class Explanation(BaseModel):
    """What the contributions measure."""

    method: str = Field(description="shapley or leave_one_out.")
    target: str = Field(description="log_probability (shapley) or probability (leave_one_out).")
    label: str = Field(description="The fused label whose (log-)probability is explained.")
    full: float = Field(description="The target with every present modality.")
    empty: float | None = Field(
        description="Shapley: the target with none (all-zero mask); contributions sum to full - empty."
    )
    gate_weights: dict[str, float] | None = Field(
        default=None, description="Gated models: the gate's weights over the present modalities."
    )


class Abstention(BaseModel):
    """Why an answer is 'uncertain'."""

    reasons: list[Literal["low_confidence", "conflict"]]
    message: str
    label: str = Field(description="The label it would have given.")
    confidence: float = Field(description="That label's probability.")
    min_confidence: float


class Adjustment(BaseModel):
    """What decoding changed in one modality to fit the model's input spec (docs/specs.md)."""

    actions: list[Literal["resized", "greyscaled", "mixed_down", "resampled", "cut", "padded"]]
    from_: dict[str, Any] = Field(
        alias="from",
        description="The payload as sent: width/height/mode, seconds/sample_rate/channels, bytes.",
    )
    to: dict[str, Any] = Field(description="What the model got, in the same terms.")
    message: str = Field(description="One sentence, e.g. 'audio cut from 3.20 s to 1.00 s (...)'.")


class PredictResponse(BaseModel):
    """The answer for one sample."""

    model: str
    version: int
    status: Literal["ok", "uncertain"] = Field(description="'uncertain': abstained, see abstention.")
    label: str | None = Field(description="The predicted label; null when status is 'uncertain'.")
    label_index: int | None
    probabilities: list[LabelProbability]
    modalities_used: list[str]
    modalities_missing: list[str]
    contributions: dict[str, float] | None = Field(
        default=None, description="Per modality present, when explain is true (see explain_method)."
    )
    explain_method: str | None = Field(default=None, description="shapley, leave_one_out or none.")
    opinions: dict[str, Opinion] | None = Field(
        default=None, description="Per modality present (explain or abstain_on_conflict)."
    )
    agreement: Agreement | None = None
    explanation: Explanation | None = None
    abstention: Abstention | None = None
    adjusted: dict[str, Adjustment] | None = Field(
        default=None,
        description="Per modality that did not already have the model's spec: how it was made to fit "
        "(cut, resized, resampled, ...). Null when every payload fitted as sent.",
    )


class PredictionsResponse(BaseModel):
    """The answers for a request with ``instances``, in order."""

    predictions: list[PredictResponse]


class TensorInfo(BaseModel):
    name: str | None = None
    dtype: str
    shape: list[int]


class ModalityInfo(BaseModel):
    formats: list[str]
    tensor: TensorInfo


class ModelSummary(BaseModel):
    name: str
    versions: list[int]
    latest: int
    fusion: str | None
    modalities: list[str]
    ready: bool
    provider: str | None


class ModelList(BaseModel):
    models: list[ModelSummary]


class InputSpec(BaseModel):
    """The model's input spec (its manifest's ``decode``): what every payload is made to fit."""

    image_size: int = Field(description="Side of the square image, pixels.")
    image_channels: int = Field(description="1 grey, 3 RGB.")
    image_normalize: bool = Field(description="Grey digits re-made MNIST-style (docs/api.md).")
    sample_rate: int
    audio_samples: int
    audio_seconds: float
    text_bytes: int
    audio_normalize: bool = Field(
        default=True,
        description="The graph removes each log-mel band's mean over the window (docs/specs.md).",
    )
    summary: str = Field(description="e.g. '28x28 grey, 1 s at 16000 Hz, 64 bytes'.")


class ModelMetadata(BaseModel):
    name: str
    version: int
    versions: list[int]
    fusion: str | None
    description: str
    modalities: dict[str, ModalityInfo]
    labels: list[str]
    provider: str | None
    ready: bool
    state: str
    reason: str
    explain: str | None = Field(description="The default explain_method of predict: shapley, or none.")
    explain_methods: list[str] = Field(description="The explain_method values predict takes.")
    gate_weights: bool = Field(description="Explained answers also carry the model's own gate weights.")
    coalition_graph: bool = Field(
        description="Explanations run in one pass of the encoders (app/coalitions.py), not as extra rows."
    )
    metrics: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    spec: InputSpec | None = Field(default=None, description="Null when the manifest could not be read.")


class ModelReadiness(BaseModel):
    name: str
    version: int
    ready: bool


class HealthStatus(BaseModel):
    status: str
