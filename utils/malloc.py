"""glibc allocator settings that make large, short-lived CPU tensors cheap.

By default glibc gives every block above its mmap threshold (at most 32 MB) a fresh mmap and unmaps it on free,
so every large activation tensor of a DSQN update is page-faulted in (and zeroed by the kernel) again on every
update. Serving all blocks from the heap and keeping freed memory removes that cost, with the same results (the
allocator does not change any arithmetic) and a heap that keeps its peak size. No committed benchmark report
(docs/benchmarks/) measures the gain: bench/run.py applies these settings on the CPU, as run.py does, and does not
time the allocator's defaults beside them.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def tune_glibc_malloc() -> bool:
    """Serve every allocation from the heap and never trim it; False where glibc's ``mallopt`` is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
