"""Read IDX files (the MNIST format), plain or gzipped, with checks that name the file and the problem."""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or inconsistent; the message names the file."""


def read_bytes(path: Path) -> bytes:
    """The file's (decompressed) bytes; a broken gzip stream is a DataError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: truncated or corrupt gzip file ({e})") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file: magic 0x0000 (2 zero bytes), a dtype byte, the number of dimensions, then one
    big-endian uint32 per dimension, then the data."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: wrong magic number {data[:4].hex() or '(empty file)'}; "
                        "an IDX file starts with two zero bytes")
    dtype = _DTYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX data type 0x{data[2]:02x} in the magic number")
    ndim = data[3]
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: header is truncated (expected {ndim} dimension sizes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    itemsize = np.dtype(dtype).itemsize
    expected = math.prod(shape) * itemsize  # exact (Python ints): a forged header cannot overflow it
    if expected > len(data) - offset and expected > 2 ** 40:
        raise DataError(f"{path}: header declares dimensions {shape} ({expected} bytes of data), far more than "
                        f"the file's {len(data) - offset} bytes: corrupt header")
    if len(data) - offset != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data) "
                        f"but the file holds {len(data) - offset} bytes: truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).astype(np.dtype(dtype).newbyteorder("="))
