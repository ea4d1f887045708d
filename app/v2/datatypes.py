"""KServe V2 tensor datatypes: names <-> numpy dtypes, and the BYTES wire format.

Numeric tensors travel little-endian and row-major. A ``BYTES`` tensor is held in numpy as an
object array of :class:`bytes`; in the binary extension each element is a 4-byte little-endian
length followed by that many bytes (the layout ``tritonclient.utils.serialize_byte_tensor`` makes).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

BYTES = "BYTES"

_NUMERIC: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES: tuple[str, ...] = (*_NUMERIC, BYTES)
"""Every datatype this server reads and writes (BF16 has no numpy dtype and is refused)."""

_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in _NUMERIC.items()}
_PREFIX = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype holding ``datatype`` (object for ``BYTES``).

    Raises:
        KeyError: not a datatype of :data:`DATATYPES`.
    """
    if datatype == BYTES:
        return np.dtype(object)
    return _NUMERIC[datatype]


def v2_datatype(dtype: npt.DTypeLike) -> str:
    """The V2 datatype of a numpy dtype or dtype name (``"float32"`` -> ``"FP32"``).

    Raises:
        KeyError: a dtype with no V2 datatype (complex, strings, datetimes).
    """
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return BYTES
    return _BY_KIND_SIZE[(dt.kind, dt.itemsize)]


def serialize_bytes(elements: Iterable[bytes]) -> bytes:
    """Length-prefix every element and join them: the binary form of a ``BYTES`` tensor."""
    return b"".join(_PREFIX.pack(len(e)) + e for e in elements)


def deserialize_bytes(raw: bytes | memoryview, count: int) -> list[bytes]:
    """Split a binary ``BYTES`` tensor of ``count`` elements; every byte must be accounted for.

    Raises:
        ValueError: a length prefix runs past the end, or the element count or total size
            does not match (the message says which).
    """
    view = memoryview(raw)
    out: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < _PREFIX.size:
            raise ValueError(f"a length prefix at byte {offset} is cut off (need 4 bytes)")
        (length,) = _PREFIX.unpack_from(view, offset)
        offset += _PREFIX.size
        if length > len(view) - offset:
            raise ValueError(f"element {len(out)} claims {length} bytes but only {len(view) - offset} remain")
        out.append(bytes(view[offset : offset + length]))
        offset += length
        if len(out) > count:
            break
    if len(out) != count:
        more = "more than " if len(out) > count else ""
        raise ValueError(f"holds {more}{len(out)} length-prefixed elements; the shape says {count}")
    return out
