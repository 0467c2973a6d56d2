"""Give freed heap memory back to the operating system.

Training on batches of varying shapes makes glibc's allocator keep freed
tensor buffers in fragmented arenas: without this, the resident memory of a
CoNLL-2003 training run grows by ~10 MB per step on CPU (22 GB after 14
epochs, then the OOM killer). ``malloc_trim(0)`` every few dozen steps keeps
it flat at a small cost. A no-op where glibc is not the allocator.
"""
import ctypes
import ctypes.util
from typing import Callable, Optional


def _load_malloc_trim() -> Optional[Callable[[int], int]]:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; False where unsupported."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
