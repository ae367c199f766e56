"""glibc malloc's mmap threshold, fixed, so that a long streaming loop's memory stays flat.

Why: glibc serves a block from its own ``mmap`` (given back to the system at ``free``) only above
the *mmap threshold*, and by default that threshold moves: each freed mapped block raises it to
that block's size (up to 32 MB). A loop that allocates the same big buffers batch after batch (the
backbone's [512 x 5,270] float32 probabilities, 10.8 MB each, their softmax, log and top-K copies)
therefore moves them into the heap after the first batch, where they interleave with small
long-lived allocations and the freed space is kept, not returned. Measured on this pipeline's
inference loop (efficientnet_lite0 at 32 px, 2 workers, 2 cores): the main process' anonymous
memory grew by about 0.65 KB per picture with the dynamic threshold (0.70 -> 1.33 GB over F = 0.1's
train pictures), and stayed flat (938 MB from the first batch to the last of 60 k pictures, against
1.09 -> 1.14 GB with the default) with the threshold fixed at 1 MB. Setting the threshold also turns
the dynamic adjustment off (glibc's documented behaviour, ``mallopt(3)``).

The price, measured: where the model runs on the CPU its activations of 1 MB or more are fresh
mappings too, so inference spends about as long in page faults (system time) as in its own code
(F = 0.1: 2,206 s user, 2,449 s system). On a GPU the activations live in CUDA's allocator.

The environment variable ``MALLOC_MMAP_THRESHOLD_`` does the same for a whole process; it is
honoured as it is where set (the user's choice wins).
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
#: Blocks from this size up get their own mapping: every per-batch array of the model stages (MBs)
#: while the small and medium allocations (pandas, arrow, Python objects) stay in the heap.
MMAP_THRESHOLD = 1 << 20


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for this process and the children it forks.

    Returns whether it was set: False off glibc (macOS, musl: nothing to do there) or where
    ``MALLOC_MMAP_THRESHOLD_`` is already in the environment."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    log.debug("malloc: mmap threshold fixed at %d bytes: %s", nbytes, ok)
    return ok


def flat_memory() -> dict[str, bool]:
    """What the streaming stages (decode, dedup, split, hierarchy, ensemble, submission) run under: glibc's
    mmap threshold fixed (:func:`fix_mmap_threshold`) and Arrow's buffers in the system allocator.

    Why: both allocators keep what a batch loop frees. Arrow's bundled mimalloc caches its freed pages and
    glibc's moving threshold pulls the batch-sized numpy arrays into the heap, so these stages' resident
    memory grew with the rows they had streamed although what they hold is one batch. Measured on the
    F = 0.1 rehearsal data (issue 11), resident memory after the split's two phases: 323 MB with both
    defaults, 266 MB with the system pool alone, 160 MB with both (imports alone: 115 MB); dedup's
    peak 373 -> 255 MB, and its wall time 35 -> 31 s (a fresh mapping per batch buffer costs less than
    the heap's fragmentation here). Where a model runs on the CPU the fixed threshold has a price (see
    the module docstring): the model stages fix it for inference only.

    ``ARROW_DEFAULT_MEMORY_POOL`` and ``MALLOC_MMAP_THRESHOLD_`` are honoured as they are where set.
    Returns which of the two were set here."""
    import pyarrow as pa

    arrow = "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
    if arrow:
        pa.set_memory_pool(pa.system_memory_pool())
    return {"mmap_threshold": fix_mmap_threshold(), "arrow_system_pool": arrow}
