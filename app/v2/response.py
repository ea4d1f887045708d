"""Build a KServe V2 inference response: JSON ``data``, or the binary tensor data extension.

Outputs that go binary (per-output ``parameters.binary_data``, else the request's
``binary_data_output``) are appended after the JSON header in output order, each announced by
``parameters.binary_data_size``; the header's length goes in ``Inference-Header-Content-Length``.
The classification extension turns an output into its top-k ``"value:index:label"`` strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from app.errors import InferenceFailed
from app.v2.datatypes import BYTES, serialize_bytes, v2_datatype
from app.v2.errors import V2Error
from app.v2.schemas import InferRequest, RequestedOutput

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


def check_outputs(request: InferRequest, available: Iterable[str]) -> None:
    """Refuse, before inference, outputs the model does not have or cannot classify.

    Raises:
        V2Error: naming the unknown output and the ones the model has.
    """
    names = list(available)
    for output in request.outputs or []:
        if output.name not in names:
            raise V2Error(f"unknown output {output.name!r}; the model has {names}")


def encode_infer_response(
    request: InferRequest,
    outputs: Mapping[str, np.ndarray],
    *,
    model_name: str,
    model_version: int | str,
    labels: Sequence[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Serialise the model's outputs as the request asked.

    Args:
        request: the parsed request (output selection, binary choices, id, parameters).
        outputs: every output the model produced, by name.
        model_name: echoed as ``model_name``.
        model_version: echoed as ``model_version`` (a string on the wire).
        labels: class names, appended to classification strings when given.

    Returns:
        The body and the headers to send with it (``Content-Type`` and, when some output is
        binary, ``Inference-Header-Content-Length``).

    Raises:
        V2Error: an asked-for output the model did not produce, or one that cannot be classified.
        InferenceFailed: a non-finite value in an output sent as JSON (500).
    """
    wanted = request.outputs if request.outputs is not None else [RequestedOutput(n) for n in outputs]
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in wanted:
        if output.name not in outputs:
            raise V2Error(f"unknown output {output.name!r}; the model has {list(outputs)}")
        array = np.asarray(outputs[output.name])
        if output.classification:
            array = classify(output.name, array, output.classification, labels)
        datatype = v2_datatype(array.dtype)
        entry: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": list(array.shape)}
        if request.wants_binary(output):
            raw = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json(array, datatype)
        described.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request.id is not None:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = request.parameters
    doc["outputs"] = described
    try:
        header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError:  # inputs are checked finite, so only a faulty model gets here
        raise InferenceFailed(
            "the model answered NaN or infinity, which JSON cannot carry; ask for the output "
            "with parameters.binary_data"
        ) from None
    if not chunks:
        return header, {"Content-Type": JSON_TYPE}
    return header + b"".join(chunks), {"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}


def classify(name: str, array: np.ndarray, top_k: int, labels: Sequence[str] | None) -> np.ndarray:
    """Top-k of the last axis as ``BYTES`` ``"value:index[:label]"``, best first (Triton's format).

    Raises:
        V2Error: the output is not numeric or has no class axis.
    """
    if array.ndim == 0 or array.dtype.kind not in "iuf":
        raise V2Error(f"output {name!r} ({array.dtype.name}, shape {list(array.shape)}) cannot be classified")
    k = min(top_k, array.shape[-1])
    order = np.argsort(-array.astype(np.float64), axis=-1, kind="stable")[..., :k]
    values = np.take_along_axis(array, order, axis=-1)
    out = np.empty(order.shape, dtype=object)
    for pos in np.ndindex(order.shape):
        index = int(order[pos])
        text = f"{float(values[pos]):f}:{index}"
        if labels is not None and index < len(labels):
            text += f":{labels[index]}"
        out[pos] = text.encode("utf-8")
    return out


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == BYTES:
        return serialize_bytes(_as_bytes(e) for e in array.ravel())
    little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    return np.ascontiguousarray(array, dtype=little).tobytes()


def _to_json(array: np.ndarray, datatype: str) -> list[Any]:
    if datatype == BYTES:
        try:
            return [_as_bytes(e).decode("utf-8") for e in array.ravel()]
        except UnicodeDecodeError:
            raise V2Error("a BYTES output is not UTF-8 text; ask for it with binary_data") from None
    values: list[Any] = array.ravel().tolist()
    return values


def _as_bytes(element: Any) -> bytes:
    if isinstance(element, bytes):
        return element
    return str(element).encode("utf-8")
