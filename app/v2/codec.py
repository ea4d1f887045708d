"""Parse a KServe V2 inference request body into numpy tensors, validating everything on the way.

The body is either one JSON object, or (binary tensor data extension) a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw data of every input whose
``parameters.binary_data_size`` is set, in input order. Each problem is a :class:`V2Error`
(400) naming the input and what to send instead, raised before any tensor is handed on.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from app.errors import BadRequest
from app.v2.datatypes import BYTES, DATATYPES, deserialize_bytes, numpy_dtype
from app.v2.schemas import InferRequest, RequestedOutput

MAX_ELEMENTS = 1 << 28
"""Most elements one input may declare; larger shapes are refused before anything is allocated."""
MAX_DIMS = 32
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


class V2Error(BadRequest):
    """A malformed V2 request: bad JSON, unknown datatype, shape and data that disagree (400)."""


def parse_header_length(value: str | None, body_size: int) -> int | None:
    """Validate the ``Inference-Header-Content-Length`` header (``None`` when absent).

    Raises:
        V2Error: not an integer, or not within 1..len(body).
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise V2Error(f"Inference-Header-Content-Length must be a whole number of bytes, got {value!r}")
    length = int(text)
    if not 0 < length <= body_size:
        raise V2Error(
            f"Inference-Header-Content-Length is {length} but the body has {body_size} bytes; "
            "it must count the JSON header that starts the body"
        )
    return length


def parse_infer_request(
    body: bytes, header_length: str | None = None, *, max_elements: int = MAX_ELEMENTS
) -> InferRequest:
    """Split, parse and validate an inference request body.

    Args:
        body: the whole (already decompressed) request body.
        header_length: the ``Inference-Header-Content-Length`` header, if the client sent one.
        max_elements: the most elements any one input may declare.

    Raises:
        V2Error: naming the field or input at fault.
    """
    length = parse_header_length(header_length, len(body))
    doc = _load_json(body if length is None else body[:length])
    request_params = _parameters(doc.get("parameters"), "request")
    binary_output = request_params.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise V2Error(f"parameters.binary_data_output must be true or false, got {binary_output!r}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(f"id must be a string, got {type(request_id).__name__}")
    entries = doc.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise V2Error("inputs must be a non-empty list of tensors ({name, shape, datatype, data})")

    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    view = memoryview(body)[len(body) if length is None else length :]  # the binary section, no copy
    offset = 0
    for i, entry in enumerate(entries):
        name, shape, datatype, params = _describe(entry, i, max_elements)
        if name in inputs:
            raise V2Error(f"input {name!r} is given twice")
        count = math.prod(shape)
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in entry:
                raise V2Error(f"input {name!r} has both data and parameters.binary_data_size; send one")
            if length is None:
                raise V2Error(
                    f"input {name!r} has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header to find the binary section"
                )
            if size > len(view) - offset:
                raise V2Error(
                    f"input {name!r} has binary_data_size {size} but only {len(view) - offset} "
                    "bytes of binary data are left after the JSON header"
                )
            chunk = view[offset : offset + size]
            offset += size
            inputs[name] = _from_binary(name, chunk, datatype, shape, count)
        elif "data" in entry:
            inputs[name] = _from_json(name, entry["data"], datatype, shape, count)
        else:
            raise V2Error(f"input {name!r} has neither data nor parameters.binary_data_size")
        datatypes[name] = datatype
    if offset != len(view):
        raise V2Error(
            f"the binary section has {len(view)} bytes but the inputs' binary_data_size add up to "
            f"{offset}; they must account for every byte after the JSON header"
        )
    return InferRequest(
        inputs=inputs,
        datatypes=datatypes,
        id=request_id,
        parameters=request_params,
        outputs=_requested_outputs(doc.get("outputs")),
        binary_data_output=binary_output,
    )


def _load_json(header: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise V2Error(f"the request header is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise V2Error(f"the request must be a JSON object, not {type(doc).__name__}")
    return doc


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise V2Error(f"{where} parameters must be a JSON object, got {type(value).__name__}")
    shared = [k for k in _SHARED_MEMORY if k in value]
    if shared:
        raise V2Error(f"{where}: shared memory ({shared[0]}) is not supported; send the data in the body")
    return dict(value)


def _describe(entry: Any, i: int, max_elements: int) -> tuple[str, list[int], str, dict[str, Any]]:
    """Check one input's name, shape, datatype and parameters (not its data)."""
    if not isinstance(entry, dict):
        raise V2Error(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(f"inputs[{i}] needs a non-empty string name")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise V2Error(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    count = math.prod(shape)
    if count > max_elements:
        raise V2Error(
            f"input {name!r}: shape {shape} has {count} elements, more than the limit of {max_elements}"
        )
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise V2Error(f"input {name!r}: datatype {datatype!r} is not one of {list(DATATYPES)}")
    params = _parameters(entry.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise V2Error(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    return name, shape, datatype, params


def _from_binary(name: str, chunk: memoryview, datatype: str, shape: list[int], count: int) -> np.ndarray:
    if datatype == BYTES:
        try:
            elements = deserialize_bytes(chunk, count)
        except ValueError as exc:
            raise V2Error(f"input {name!r} (BYTES, shape {shape}): binary data {exc}") from None
        return _object_array(elements, shape)
    dtype = numpy_dtype(datatype)
    if len(chunk) != count * dtype.itemsize:
        raise V2Error(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes "
            f"({count} x {dtype.itemsize}) but binary_data_size is {len(chunk)}"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise V2Error(f"input {name!r}: BOOL bytes must be 0 or 1")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _from_json(name: str, data: Any, datatype: str, shape: list[int], count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise V2Error(f"input {name!r}: data must be a list (flat or nested, row-major)")
    if datatype == BYTES:
        elements = _flatten_strings(name, data, shape)
        if len(elements) != count:
            raise V2Error(f"input {name!r}: data has {len(elements)} elements; shape {shape} needs {count}")
        return _object_array(elements, shape)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise V2Error(f"input {name!r}: data is not a rectangular list of numbers") from None
    if array.size != count:
        raise V2Error(f"input {name!r}: data has {array.size} elements; shape {shape} needs {count}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise V2Error(
            f"input {name!r}: nested data has shape {list(array.shape)} but the declared shape is {shape}; "
            "nest it exactly like the shape or send it flat"
        )
    if not count:
        return np.empty(shape, dtype=numpy_dtype(datatype))
    return _convert(name, data, array, datatype).reshape(shape)


def _convert(name: str, data: list[Any], array: np.ndarray, datatype: str) -> np.ndarray:
    """JSON numbers must fit the datatype: no strings, no floats for ints, nothing out of range."""
    kind, target = array.dtype.kind, numpy_dtype(datatype)
    if datatype == "BOOL":
        if kind != "b":
            raise V2Error(f"input {name!r}: BOOL data must be true/false values")
        return array
    if target.kind == "f":
        if kind not in "iuf":
            raise V2Error(f"input {name!r}: {datatype} data must hold numbers, got {array.dtype.name} values")
        return array.astype(target, copy=False)
    values: list[Any] | None = None
    if kind in "fO":  # numpy turns big and mixed-sign Python ints into floats or objects: look at each
        exact = np.asarray(data, dtype=object)
        values = exact.ravel().tolist()
        if exact.shape != array.shape or not all(type(v) is int for v in values):
            values = None
    elif kind in "iu":
        values = [int(array.min()), int(array.max())]
    if values is None:
        raise V2Error(f"input {name!r}: {datatype} data must hold integers, got {array.dtype.name} values")
    info = np.iinfo(target)
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        raise V2Error(f"input {name!r}: values {low}..{high} do not fit {datatype} ({info.min}..{info.max})")
    if kind in "fO":
        return np.array(values, dtype=target).reshape(array.shape)
    return array.astype(target, copy=False)


def _flatten_strings(name: str, data: list[Any], shape: list[int]) -> list[bytes]:
    """UTF-8 encode BYTES data given flat, or nested exactly like ``shape``."""
    leaves: list[Any] = data
    if any(isinstance(item, list) for item in data):
        leaves = []

        def walk(items: Any, depth: int) -> None:
            if not isinstance(items, list) or depth >= len(shape) or len(items) != shape[depth]:
                raise V2Error(
                    f"input {name!r}: nested data does not match the declared shape {shape}; "
                    "nest it exactly like the shape or send it flat"
                )
            for item in items:
                if depth + 1 < len(shape):
                    walk(item, depth + 1)
                else:
                    leaves.append(item)

        walk(data, 0)
    out: list[bytes] = []
    for item in leaves:
        if not isinstance(item, str):
            raise V2Error(f"input {name!r}: BYTES data must hold strings, got {type(item).__name__}")
        try:
            out.append(item.encode("utf-8"))
        except UnicodeEncodeError:
            raise V2Error(f"input {name!r}: element {len(out)} is not encodable as UTF-8") from None
    return out


def _object_array(elements: list[bytes], shape: list[int]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise V2Error("outputs must be a list of {name, parameters} objects")
    outputs: list[RequestedOutput] = []
    for i, entry in enumerate(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise V2Error(f"outputs[{i}] needs a non-empty string name")
        if any(o.name == name for o in outputs):
            raise V2Error(f"output {name!r} is asked for twice")
        params = _parameters(entry.get("parameters"), f"output {name!r}")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise V2Error(f"output {name!r}: binary_data must be true or false, got {binary!r}")
        top = params.get("classification", 0)
        if not isinstance(top, int) or isinstance(top, bool) or top < 0:
            raise V2Error(f"output {name!r}: classification must be a non-negative integer, got {top!r}")
        outputs.append(RequestedOutput(name, binary, top))
    return outputs
