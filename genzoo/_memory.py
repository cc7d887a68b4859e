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

__all__ = ["trim_memory", "large_blocks_from_mmap", "steady_heap"]


def _libc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_MALLOC_TRIM = _libc_trim()
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)


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
    return _mallopt(M_MMAP_THRESHOLD, threshold)


def _mallopt(param: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(param, int(value)) == 1


def steady_heap(keep: int = 1 << 30) -> bool:
    """For a batch job (train, sample, evaluate): blocks up to 32 MB come from the heap, and up to `keep` bytes
    freed at its top stay there (mallopt M_MMAP_THRESHOLD = 32 MB, M_TRIM_THRESHOLD = keep), so a loop that
    allocates and frees the same large activations every step reuses the same pages. With glibc's defaults
    each such tensor is a fresh mmap (or the heap is trimmed and grown again), and every page of it is a page
    fault that the kernel zeroes: measured on DDPM sampling at batch 250-500 (docs/benchmarks.md), system time
    fell from 3.2-5.2 to 1.0 CPU s per 500 images x 10 steps, 12-22% of the process's CPU. Memory freed at the top
    is kept up to `keep` (what the next step needs again); `trim_memory()` still hands it back on request.
    Not for the explorer's server, which wants memory back after each burst (`large_blocks_from_mmap`).
    True if set (False where the C library has no mallopt)."""
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and _mallopt(M_TRIM_THRESHOLD, keep)
