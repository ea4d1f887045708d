"""The shapes of the V2 protocol: parsed inference requests, and the metadata answers.

:class:`InferRequest` is what :func:`app.v2.codec.parse_infer_request` returns. The pydantic
models describe the JSON of the metadata, readiness and repository endpoints (and give them an
OpenAPI schema); the ``*_metadata`` builders make them from a model's manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from app.manifest import Manifest, TensorSpec
from app.v2.datatypes import DATATYPES, v2_datatype

PLATFORM = "onnxruntime_onnx"
"""What ``platform`` says in model metadata (Triton's name for an ONNX Runtime model)."""


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """One entry of the request's ``outputs`` list.

    Attributes:
        name: the output tensor wanted.
        binary_data: ``parameters.binary_data``; ``None`` falls back to the request-wide
            ``binary_data_output``.
        classification: ``parameters.classification``: return the top-k classes as ``BYTES``
            ``"value:index:label"`` instead of the raw tensor (0 = raw tensor).
    """

    name: str
    binary_data: bool | None = None
    classification: int = 0


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed and validated V2 inference request.

    Attributes:
        inputs: name -> array shaped as declared; ``BYTES`` inputs are object arrays of bytes.
        datatypes: name -> the V2 datatype the client declared.
        id: the request id, echoed in the response.
        parameters: the request's ``parameters`` without the ones this codec consumes.
        outputs: the outputs asked for, in order; ``None`` means every output of the model.
        binary_data_output: whether outputs without their own ``binary_data`` go binary.
    """

    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    binary_data_output: bool = False

    def wants_binary(self, output: RequestedOutput) -> bool:
        """Whether ``output`` is sent in the binary section rather than as JSON ``data``."""
        return self.binary_data_output if output.binary_data is None else output.binary_data


class TensorMetadata(BaseModel):
    """One input or output in model metadata; ``-1`` marks the batch dimension."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}[/versions/{version}]``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = {}


class ModelReady(BaseModel):
    """A model's readiness: the ``.../ready`` endpoints (when ready) and repository load/unload."""

    name: str
    version: str | None = None
    ready: bool


class RepositoryModel(BaseModel):
    """One row of ``POST /v2/repository/index`` (Triton's states: READY, LOADING, UNAVAILABLE)."""

    name: str
    version: str
    state: str
    reason: str = ""


def tensor_metadata(spec: TensorSpec) -> TensorMetadata:
    """A manifest tensor as V2 metadata (``uint8`` -> ``UINT8``)."""
    return TensorMetadata(name=spec.name, datatype=v2_datatype(spec.dtype), shape=list(spec.shape))


def model_metadata(manifest: Manifest, versions: Iterable[int]) -> ModelMetadata:
    """Metadata of one model version, from its manifest.

    ``parameters`` tells tensor clients what the friendly API knows: the modalities, the class
    labels, the fusion kind, and that ``text`` may also be sent as ``BYTES`` strings.
    """
    return ModelMetadata(
        name=manifest.name,
        versions=[str(v) for v in versions],
        platform=PLATFORM,
        inputs=[tensor_metadata(t) for t in manifest.inputs],
        outputs=[tensor_metadata(t) for t in manifest.outputs],
        parameters={
            "version": str(manifest.version),
            "fusion": manifest.fusion,
            "modalities": list(manifest.modalities),
            "labels": list(manifest.labels),
            "logits_output": manifest.logits_output,
            "input_spec": manifest.decode.summary(),
        },
    )


_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": {"type": "object", "description": "binary_data_size: bytes in the binary section"},
        "data": {"type": "array", "items": {}, "description": "row-major, flat or nested like the shape"},
    },
}
INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "description": "binary_data_output; others are echoed"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_SCHEMA},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {"type": "object", "description": "binary_data, classification"},
                },
            },
        },
    },
    "example": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["sept"]}]},
}
"""The JSON part of an infer request, for the OpenAPI document (the route parses the body itself)."""
