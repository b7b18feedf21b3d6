"""Keep freed memory inside a CPU training process, so that large activations stop page-faulting on every step.

glibc's malloc serves every request of 32 MiB or more with a fresh `mmap` and returns it to the system on `free`. A
CPU training step allocates and frees its large activations again at every step, so each of them is a fresh mapping
whose pages the kernel must fault in and zero on first touch. At 80 px with batch 64, EfficientNet-Lite0's second
stage makes 39 MiB activations; measured on a 2-core AMD EPYC, `x + 1` on one took 18.9 ms with fresh pages and
2.2 ms on reused ones (`benchmarks/cpu_step_speedups.py`). glibc will not raise its mmap threshold above 32 MiB, but it can be told not to use
`mmap` at all (`M_MMAP_MAX = 0`) and to keep freed memory at the top of its heap (a high `M_TRIM_THRESHOLD`): large
blocks are then reused from step to step, as a caching allocator would. The process keeps its peak memory until it
exits, which a training process reaches at its first step anyway.

This changes a process-wide setting that lasts until the process exits, so it is made only where it is asked for:
`GReFELTrainer` makes it when CPU training starts and the training argument `--keep_freed_memory` is on (the default;
it never changes results), never at import time and never in a process that only evaluates or predicts. Elsewhere
(another C library, a GPU run) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

# mallopt parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes a C int: trim the heap only when 2 GiB at its top are free

_applied = False


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap and keep freed memory for reuse.

    Returns True when the setting is in effect (now or from an earlier call), False where the C library is not glibc
    or refused it; nothing is raised, because the setting only changes speed, never results.
    """
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        logger.info("reusing freed memory: the C library is not glibc (%s %s); malloc left as it is", platform.system(),
                    platform.libc_ver()[0] or "unknown")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)):
        logger.warning("reusing freed memory: glibc refused mallopt; large CPU activations keep page-faulting")
        return False
    _applied = True
    logger.info("reusing freed memory: glibc malloc now reuses freed memory instead of mapping large blocks afresh")
    return True


__all__ = ["reuse_freed_memory"]
