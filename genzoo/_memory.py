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

__all__ = ["trim_memory"]


def _libc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_MALLOC_TRIM = _libc_trim()


def trim_memory() -> bool:
    """Hand memory that malloc keeps after frees back to the system (glibc's malloc_trim(0)); True if done
    (False where the C library has no malloc_trim). About 0.5 ms on a heap of a few hundred MB."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
