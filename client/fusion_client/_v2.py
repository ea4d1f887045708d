"""KServe V2 (Open Inference Protocol) tensors: ndarrays <-> request and response bodies.

Binary tensor data extension (Triton, KServe): the body is the JSON header followed by each
binary input's raw bytes in the order of ``inputs``; the ``Inference-Header-Content-Length`` HTTP
header gives the JSON's length in bytes and each input carries ``"parameters": {"binary_data_size":
n}``. Raw bytes are little-endian, row-major, without padding; BOOL is one byte; BYTES elements are
each a 4-byte little-endian unsigned length followed by the bytes. ``"binary_data_output": true`` in
the request parameters asks for every output in the same form, and the response announces it the
same way (header length plus per-output ``binary_data_size``).

numpy is required here (``pip install 'fusionserve-client[media]'``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fusion_client._exceptions import DecodeError

if TYPE_CHECKING:
    import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"

_DTYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise ImportError("infer() needs numpy: pip install 'fusionserve-client[media]'") from exc
    return numpy


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype name of an array (object, bytes and str arrays are ``BYTES``)."""
    np = _numpy()
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, code in _DTYPES.items():
        if np.dtype(code) == array.dtype.newbyteorder("<"):
            return name
    raise TypeError(
        f"no V2 datatype for numpy dtype {array.dtype}; use bool, (u)int8..64, float16/32/64 or bytes"
    )


def encode_request(
    inputs: Mapping[str, Any],
    *,
    outputs: Sequence[str] | None = None,
    binary: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of an infer request.

    Args:
        inputs: Tensor name -> array (anything ``numpy.asarray`` accepts).
        outputs: Output names to return; all outputs when ``None``.
        binary: Use the binary tensor extension both ways; ``False`` sends and asks for JSON.
        parameters: Extra request-level parameters.

    Raises:
        TypeError: An input whose dtype has no V2 datatype.
        ValueError: No inputs, or a BYTES element that is not UTF-8 in JSON mode.
    """
    np = _numpy()
    if not inputs:
        raise ValueError("infer() needs at least one input tensor")
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        spec: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            blob = _bytes_tensor(array) if datatype == "BYTES" else _raw(array)
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            spec["data"] = _json_data(array, datatype)
        specs.append(spec)
    request: dict[str, Any] = {"inputs": specs}
    if outputs is not None:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    params = dict(parameters or {})
    if binary:
        params["binary_data_output"] = True
    if params:
        request["parameters"] = params
    header = json.dumps(request, separators=(",", ":")).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    extra = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *blobs]), extra


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Output name -> array from an infer response, binary or JSON.

    Raises:
        DecodeError: Malformed header, sizes that do not add up, or an unknown datatype.
    """
    try:
        size = len(body) if header_length is None else int(header_length)
        if not 0 <= size <= len(body):
            raise ValueError(f"{HEADER_LENGTH} {size} is outside the body of {len(body)} bytes")
        header = json.loads(body[:size])
        specs = header["outputs"]
        offset = size
        result: dict[str, np.ndarray] = {}
        for spec in specs:
            name, datatype, shape = spec["name"], spec["datatype"], [int(d) for d in spec["shape"]]
            nbytes = (spec.get("parameters") or {}).get("binary_data_size")
            if nbytes is None:
                array = _from_json(spec["data"], datatype)
            else:
                end = offset + int(nbytes)
                if end > len(body):
                    raise ValueError(f"output {name!r} needs {nbytes} bytes past offset {offset}; body ends")
                array = _from_bytes(body[offset:end], datatype)
                offset = end
            result[name] = array.reshape(shape)
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise DecodeError(f"unexpected V2 infer response: {type(exc).__name__}: {exc}") from exc
    if offset != len(body):
        raise DecodeError(f"V2 infer response has {len(body) - offset} bytes no output claims")
    return result


def _raw(array: np.ndarray) -> bytes:
    """Little-endian, row-major bytes (a no-op view for native little-endian C-contiguous arrays)."""
    return _numpy().ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise TypeError(f"BYTES tensors hold bytes or str elements, not {type(item).__name__}")


def _bytes_tensor(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in array.ravel(order="C").tolist():
        data = _as_bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _json_data(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.ravel(order="C").tolist()
    if datatype != "BYTES":
        return flat
    try:
        return [item if isinstance(item, str) else _as_bytes(item).decode("utf-8") for item in flat]
    except UnicodeDecodeError as exc:
        raise ValueError("BYTES elements that are not UTF-8 need binary=True") from exc


def _from_bytes(blob: bytes, datatype: str) -> np.ndarray:
    np = _numpy()
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(blob):
            (n,) = struct.unpack_from("<I", blob, offset)
            offset += 4
            if offset + n > len(blob):
                raise ValueError("BYTES element runs past the end of its tensor")
            items.append(blob[offset : offset + n])
            offset += n
        return _object_array(items)
    code = _code(datatype)
    if len(blob) % np.dtype(code).itemsize:
        raise ValueError(f"{len(blob)} bytes is not a whole number of {datatype} elements")
    return np.frombuffer(blob, dtype=code).astype(np.dtype(code).newbyteorder("="))


def _from_json(data: list[Any], datatype: str) -> np.ndarray:
    np = _numpy()
    if datatype == "BYTES":
        return _object_array([_as_bytes(item) for item in np.asarray(data, dtype=object).ravel().tolist()])
    return np.asarray(data, dtype=np.dtype(_code(datatype)).newbyteorder("=")).ravel()


def _object_array(items: list[bytes]) -> np.ndarray:
    np = _numpy()
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _code(datatype: str) -> str:
    try:
        return _DTYPES[datatype]
    except KeyError:
        raise ValueError(f"unsupported V2 datatype {datatype!r}") from None
