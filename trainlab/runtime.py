"""Process-wide settings that make CPU training faster: glibc's allocator.

Large tensors (a population's activations are P times a model's: the convnet's first
conv output at P = 8 and batch 100 is 55 MB) are above glibc malloc's mmap threshold
(at most 32 MB by default), so every step's activations are fresh pages from the kernel,
zero-filled on first touch, and returned at ``free``. :func:`keep_freed_memory` raises the
mmap and trim thresholds so freed blocks stay in the heap and the next step reuses them:
the same settings as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the
environment, applied from inside the process with ``mallopt(3)``.

Measured (``benchmarks/bench_conv.py``, docs/benchmarks.md): the convnet population of 8
goes from 0.6-0.7x to 1.0x the speed of 8 PyTorch runs; PyTorch itself gains too. The
price: memory a step freed is kept by the process (up to the trim threshold) rather than
given back to the OS -- right for a training process, which will allocate it again.

The command line calls it at start; from Python, call it yourself. Opt out with the
environment variable ``TRAINLAB_MALLOC=system``. On other C libraries (macOS, Windows,
musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: allocations below this come from the heap, not from fresh mmap'ed pages (1 GiB)
MMAP_THRESHOLD = 1 << 30
#: free heap memory above this is returned to the OS (2 GiB - 1, mallopt's int limit)
TRIM_THRESHOLD = (1 << 31) - 1

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); True when they are set."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("TRAINLAB_MALLOC", "").lower() == "system" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD)) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD)) == 1)
    except (OSError, AttributeError):
        return False
    _applied = bool(ok)
    return _applied
