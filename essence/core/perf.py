"""Process-wide speed settings a command may opt into (never applied on import)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    PyTorch on the CPU allocates a fresh buffer for almost every op; glibc serves blocks over 32 MiB
    with mmap and unmaps them on free, so every large activation costs page faults again. Reusing
    the heap makes a 1024-px StyleGAN2 forward about 1.5x faster; the price is that the process keeps
    its peak memory reserved. Returns False where it does not apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
