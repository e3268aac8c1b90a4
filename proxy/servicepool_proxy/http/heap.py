"""Give the C heap's free memory back to the system.

glibc keeps memory freed by a burst of connections (their read buffers) inside the heap,
so RSS stays at the burst's peak although nothing uses it; `malloc_trim` returns it.
Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> None:
    """Return the heap's free pages to the system, where the C library can."""
    if _malloc_trim is not None:
        _malloc_trim(0)
