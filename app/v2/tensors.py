"""V2 tensor data -> numpy arrays of the declared shape, JSON ``data`` or binary, checked on the way.

:mod:`app.v2.codec` has already checked the name, the datatype and a shape within the element
limit; these functions check that the data agrees with them (count, nesting, value range).
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from app.v2.datatypes import BYTES, deserialize_bytes, numpy_dtype
from app.v2.errors import V2Error

_ARRAY_CODES = {"FP32": "f", "FP64": "d"}
"""The :mod:`array` type code of each float datatype the quick JSON path takes."""


def from_binary(name: str, chunk: memoryview, datatype: str, shape: list[int], count: int) -> np.ndarray:
    """An input's slice of the binary section as an array (a view of the body, no copy)."""
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


def from_json(name: str, data: Any, datatype: str, shape: list[int], count: int) -> np.ndarray:
    """An input's JSON ``data``, flat or nested exactly like ``shape``, as an array of ``datatype``."""
    if not isinstance(data, list):
        raise V2Error(f"input {name!r}: data must be a list (flat or nested, row-major)")
    if datatype == BYTES:
        elements = _flatten_strings(name, data, shape)
        if len(elements) != count:
            raise V2Error(f"input {name!r}: data has {len(elements)} elements; shape {shape} needs {count}")
        return _object_array(elements, shape)
    flat = _flat_floats(data, datatype, count)
    if flat is not None:
        return flat.reshape(shape)
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


def _flat_floats(data: list[Any], datatype: str, count: int) -> np.ndarray | None:
    """A flat list of numbers for FP32/FP64, converted in one C pass (:mod:`array` takes only
    real numbers: a string or null raises), without ``np.asarray``'s dtype discovery (~300 us
    for 16,000 floats). Anything else (nested, starting with a bool, a string, null, a value out
    of range, the wrong count) returns ``None`` for the general path, which decides as before."""
    code = _ARRAY_CODES.get(datatype)
    if code is None or not data or len(data) != count or isinstance(data[0], list | bool):
        return None
    try:
        values = array.array(code, data)
    except (TypeError, OverflowError):
        return None
    return np.frombuffer(values, dtype=numpy_dtype(datatype))


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
        with np.errstate(over="ignore"):  # beyond the datatype's range is inf, which models refuse
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
