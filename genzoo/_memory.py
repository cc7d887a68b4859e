"""Handing freed heap memory back to the system (glibc's malloc_trim), shared by the engine and the explorer.

Why it is needed: glibc serves a large allocation from mmap only until the first such block is freed; then its
"dynamic mmap threshold" rises to that size and later blocks of that size come from the heap. A loop that
allocates one large tensor per batch (the float copy of the batch) and keeps one small result per batch (a
model's codes in `on_train_end`) interleaves the small live blocks with the holes the large ones leave, and a
large block no longer fits a hole: the heap grows by about a batch every other batch and its resident pages are
never returned. Measured (docs/benchmarks.md, "Image-folder cache"): +700 MB of private memory for an AE's
on_train_end over a 210 MB folder, growing with the folder's size. `malloc_trim(0)` gives the free pages inside
the heap back (madvise), so resident memory stays at about one batch.
"""
from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["trim_memory", "large_blocks_from_mmap"]


def _libc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_MALLOC_TRIM = _libc_trim()
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def trim_memory() -> bool:
    """Hand memory that malloc keeps after frees back to the system (glibc's malloc_trim(0)); True if done
    (False where the C library has no malloc_trim). About 0.5 ms on a heap of a few hundred MB."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def large_blocks_from_mmap(threshold: int = 1 << 20) -> bool:
    """Serve every allocation of `threshold` bytes or more from its own mmap for the rest of this process
    (glibc's mallopt(M_MMAP_THRESHOLD): this also switches the dynamic threshold off), so freeing it returns
    it to the system at once. For a long-lived server whose requests allocate large, short-lived tensors on
    worker threads: with the dynamic threshold those land in the threads' arenas, and malloc_trim could not give
    them back (measured on the explorer's load test: 70-100 MB held after a burst with trim alone, 3 MB with
    this; docs/benchmarks.md). True if set (False where the C library has no mallopt)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
