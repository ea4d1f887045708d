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

import msgspec
import numpy as np

from app.errors import PayloadTooLarge
from app.v2.datatypes import DATATYPES
from app.v2.errors import V2Error
from app.v2.schemas import InferRequest, RequestedOutput
from app.v2.tensors import from_binary, from_json

MAX_ELEMENTS = 1 << 28
"""Most elements one input may declare; larger shapes are refused before anything is allocated."""
MAX_DIMS = 32
_JSON = msgspec.json.Decoder()
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def parse_header_length(value: str | None, body_size: int) -> int | None:
    """Validate the ``Inference-Header-Content-Length`` header (``None`` when absent).

    Raises:
        V2Error: not a whole number in ASCII digits, or not within 1..len(body).
    """
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):  # str.isdigit() alone takes "²", which int() refuses
        raise V2Error(f"Inference-Header-Content-Length must be a whole number of bytes, got {value!r}")
    length = int(text)
    if not 0 < length <= body_size:
        raise V2Error(
            f"Inference-Header-Content-Length is {length} but the body has {body_size} bytes; "
            "it must count the JSON header that starts the body"
        )
    return length


def parse_infer_request(
    body: bytes,
    header_length: str | None = None,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_rows: int | None = None,
) -> InferRequest:
    """Split, parse and validate an inference request body.

    Args:
        body: the whole (already decompressed) request body.
        header_length: the ``Inference-Header-Content-Length`` header, if the client sent one.
        max_elements: the most elements any one input may declare.
        max_rows: the most rows (dim 0, the batch) any one input may declare; checked from the
            shape, before its data is read (``None``: no limit).

    Raises:
        V2Error: naming the field or input at fault.
        PayloadTooLarge: an input with more than ``max_rows`` rows (413).
    """
    length = parse_header_length(header_length, len(body))
    if length is None:
        doc = load_json_object(body, "the request")
    else:
        doc = load_json_object(body[:length], "the request's JSON header")
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
        if max_rows is not None and shape and shape[0] > max_rows:
            raise PayloadTooLarge(
                f"input {name!r} has {shape[0]} rows (dim 0), more than the limit of {max_rows}"
            )
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
            inputs[name] = from_binary(name, chunk, datatype, shape, count)
        elif "data" in entry:
            inputs[name] = from_json(name, entry["data"], datatype, shape, count)
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


def load_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object, whatever the bytes (every V2 body goes through here).

    msgspec parses it (about 4x faster than :mod:`json` on a 120 KB tensor body). What msgspec
    refuses goes through :mod:`json` again, so that the error (or acceptance: a lone surrogate
    in a string, a number beyond float range) is exactly what it always was. Python's parser
    also takes ``NaN`` and ``Infinity``, which are not JSON: they are refused, so no non-finite
    number gets in through JSON (and none is echoed back).

    Raises:
        V2Error: not UTF-8, not JSON, nested too deep for the parser, or not an object.
    """
    try:
        doc = _JSON.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        try:
            doc = json.loads(raw, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise V2Error(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise V2Error(f"{what} must be a JSON object, not {type(doc).__name__}")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (JSON numbers are finite)")


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
    span = math.prod(d for d in shape if d)  # [0, 2**63] holds nothing, but numpy cannot shape it
    if span > max_elements:
        raise V2Error(
            f"input {name!r}: shape {shape} has dimensions over the limit of {max_elements} elements "
            "(their product without the zeros is what counts)"
        )
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise V2Error(f"input {name!r}: datatype {datatype!r} is not one of {list(DATATYPES)}")
    params = _parameters(entry.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise V2Error(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    return name, shape, datatype, params


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
