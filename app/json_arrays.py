"""Large JSON bodies with number arrays, parsed without a Python object per number.

A generic JSON parser turns ``[[0.5, 0.25, ...], ...]`` into one Python float (24 bytes) plus one
list slot (8 bytes) per number, and numpy then copies them again: a 16 MiB body took 624 MB.
Here msgspec walks the body once and hands back the raw bytes of each ``array`` value
(:class:`msgspec.Raw`, a view, no copy); the array's shape is read from its brackets and the
commas of its innermost lists, then its numbers are parsed in 256 KiB slices (msgspec again,
~250 MB/s) into one preallocated float64 buffer: a slice's floats live only while they are
copied. Peak memory is the body plus that buffer, and no slice holds the GIL for more than a
few milliseconds, so other requests keep being served meanwhile.

:func:`load_body` gives the same Python structure a JSON parser would, except that every
``image.array`` / ``audio.array`` (top level or in ``instances``) is already an ndarray, and that
large values in places the schema does not allow are replaced by an empty value of the same
kind, so validation still names the field without the server building it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from app.errors import BadRequest

SLICE_BYTES = 256 * 1024
PLACEHOLDER_OVER = 4096
"""A value over this many bytes where the schema has no place for it is not built."""
_FLOAT_SYNTAX = b".eE"
_NUMBERS = msgspec.json.Decoder(list[float])
_BRACKETS = bytes.maketrans(b"[]", b"  ")
_MEDIA_KEYS = ("image", "audio")
_Object = dict[str, msgspec.Raw]


def load_body(body: bytes) -> Any:
    """The JSON body as Python values, media arrays as ndarrays.

    Raises:
        BadRequest: malformed JSON, or an ``array`` that is not a rectangular array of numbers.
    """
    try:
        top = msgspec.json.decode(body, type=_Object)
    except msgspec.ValidationError:
        return _small(msgspec.Raw(body))  # not an object: let the schema say so
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    return _instance(top, "")


def _instance(obj: _Object, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in obj.items():
        if key in _MEDIA_KEYS:
            out[key] = _media(raw, f"{prefix}{key}")
        elif key == "text":
            out[key] = _string(raw)
        elif key == "instances" and not prefix:
            out[key] = _instances(raw)
        else:
            out[key] = _small(raw)
    return out


def _instances(raw: msgspec.Raw) -> Any:
    try:
        items = msgspec.json.decode(raw, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        return _small(raw)
    out: list[Any] = []
    for i, item in enumerate(items):
        try:
            out.append(_instance(msgspec.json.decode(item, type=_Object), f"instances[{i}]."))
        except msgspec.ValidationError:
            out.append(_small(item))
    return out


def _media(raw: msgspec.Raw, field: str) -> Any:
    try:
        obj = msgspec.json.decode(raw, type=_Object)
    except msgspec.ValidationError:
        return _small(raw)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "array" and bytes(memoryview(value)[:1]) == b"[":
            out[key] = parse_array(value, f"{field}.array")
        elif key == "b64":
            out[key] = _string(value)
        else:
            out[key] = _small(value)
    return out


def _string(raw: msgspec.Raw) -> Any:
    """A string value as it is (it costs about its size); anything else as :func:`_small`."""
    view = memoryview(raw)
    return msgspec.json.decode(view) if bytes(view[:1]) == b'"' else _small(raw)


def _small(raw: msgspec.Raw) -> Any:
    """The value itself, or an empty one of the same JSON kind when it is large."""
    view = memoryview(raw)
    if len(view) <= PLACEHOLDER_OVER:
        return msgspec.json.decode(view)
    first = bytes(view[:1])
    return [] if first == b"[" else {} if first == b"{" else msgspec.json.decode(view)


def parse_array(raw: msgspec.Raw | bytes, field: str) -> np.ndarray:
    """A JSON array of numbers (any depth, rectangular) -> ndarray (int64 if all are integers).

    ``raw`` must be valid JSON (msgspec has checked it); its structure is read from the brackets
    and the commas inside the innermost lists, so nothing is built per number.

    Raises:
        BadRequest: not rectangular, or not only numbers (``field`` named).
    """
    data = memoryview(raw).cast("B")
    codes = np.frombuffer(data, dtype=np.uint8)
    bad = BadRequest(f"{field}: not a rectangular array of numbers")
    opens = np.flatnonzero(codes == ord("["))
    closes = np.flatnonzero(codes == ord("]"))
    shape, inner_open, inner_close = _shape(opens, closes, bad)
    commas = np.flatnonzero(codes == ord(","))
    counts = np.searchsorted(commas, inner_close) - np.searchsorted(commas, inner_open) + 1
    empty = inner_close - inner_open == 1
    if empty.any():
        counts[empty] = 0
    if counts.size and (counts != counts[0]).any():
        raise bad
    shape.append(int(counts[0]) if counts.size else 0)
    total = int(np.prod(shape))
    out = np.empty(total, dtype=np.float64)
    try:
        filled = _fill(data if total else memoryview(b""), commas, out)
    except msgspec.DecodeError:  # a string, object, true/false/null: not a number
        raise bad from None
    if filled != total:
        raise bad
    if not any(np.count_nonzero(codes == c) for c in _FLOAT_SYNTAX):
        if total and np.abs(out).max() >= 2.0**63:
            raise bad
        return out.astype(np.int64).reshape(shape)
    return out.reshape(shape)


def _shape(
    opens: np.ndarray, closes: np.ndarray, bad: BadRequest
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Dims above the innermost, and where each innermost list opens and closes."""
    if opens.size != closes.size or opens.size == 0:
        raise bad
    positions = np.concatenate([opens, closes])
    steps = np.concatenate([np.ones(opens.size, np.int64), -np.ones(closes.size, np.int64)])
    order = np.argsort(positions, kind="stable")
    depth_after = np.cumsum(steps[order])
    is_open = steps[order] > 0
    open_depth = depth_after[is_open]  # depth of the list each "[" opens (1 = outermost)
    close_depth = depth_after[~is_open] + 1
    ndim = int(open_depth.max())
    shape: list[int] = []
    for level in range(1, ndim):
        parents = opens[open_depth == level]
        parent_ends = closes[close_depth == level]
        children = opens[open_depth == level + 1]
        per_parent = np.searchsorted(children, parent_ends) - np.searchsorted(children, parents)
        if per_parent.size == 0 or (per_parent != per_parent[0]).any():
            raise bad
        shape.append(int(per_parent[0]))
    inner_open = opens[open_depth == ndim]
    inner_close = closes[close_depth == ndim]
    if inner_open.size != inner_close.size:
        raise bad
    return shape, inner_open, inner_close


def _fill(data: memoryview, commas: np.ndarray, out: np.ndarray) -> int:
    """Parse the numbers of ``data`` (brackets ignored) into ``out``, a slice at a time, each cut
    at a comma; returns how many numbers there were (more than ``out`` holds: ``out.size + 1``)."""
    filled, start, size = 0, 0, len(data)
    while start < size:
        at = int(np.searchsorted(commas, start + SLICE_BYTES))
        end = int(commas[at]) if at < commas.size else size
        chunk = data[start:end].tobytes().translate(_BRACKETS)
        start = end + 1
        if not chunk.strip():
            continue
        values = np.array(_NUMBERS.decode(b"[" + chunk + b"]"), dtype=np.float64)  # ~250 MB/s
        if filled + values.size > out.size:
            return out.size + 1
        out[filled : filled + values.size] = values
        filled += values.size
    return filled
