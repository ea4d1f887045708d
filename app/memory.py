"""Give memory back to the OS after large requests (glibc only; a no-op elsewhere).

Large request bodies and the arrays parsed from them are allocated and freed in bursts. By
default glibc raises its mmap threshold each time a large block is freed, so the next large
blocks come from the heap and stay resident after they are freed: RSS grows to the largest burst
seen and stays there. Fixing the threshold keeps every block over 256 KiB in its own mapping,
returned to the OS when freed; capping the arenas keeps worker threads (parsing, decoding) from
each growing a heap of their own; ``malloc_trim`` returns what the heap still holds free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("app.memory")

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def tune_malloc() -> bool:
    """Fixed mmap threshold and few arenas (call once at start, before worker threads exist).

    Returns:
        Whether glibc took the settings (``False`` on other C libraries).
    """
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    ok = bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX)) and ok
    log.debug("malloc tuned: mmap threshold %d bytes, %d arenas (%s)", MMAP_THRESHOLD_BYTES, ARENA_MAX, ok)
    return ok


def trim() -> None:
    """Return the free memory at the top of glibc's heaps to the OS (a few ms; run it in a thread)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
