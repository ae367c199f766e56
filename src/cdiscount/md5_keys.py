"""MD5 hex strings as numbers: a hash table's keys without a Python string per picture.

The image tables keep each picture's MD5 as 32 hex digits (readable, joinable in pandas). Stages that
must handle millions of them at once decode the arrow string buffer in one go instead: 16 raw bytes per
hash (exact, sortable) or its leading digits (a partition key).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Value of each ASCII byte as a hex digit (255: not one).
HEX_VALUE = np.full(256, 255, dtype=np.uint8)
HEX_VALUE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
HEX_VALUE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
HEX_VALUE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def hex_digits(md5: pa.Array | pa.ChunkedArray, n_digits: int = 32) -> np.ndarray | None:
    """[hashes x n_digits] digit values (uint8) read straight from the string buffer, or None where a
    value is null or not 32 hex digits."""
    md5 = md5.combine_chunks() if isinstance(md5, pa.ChunkedArray) else md5
    if not len(md5):
        return np.zeros((0, n_digits), dtype=np.uint8)
    if md5.null_count or md5.type != pa.string():
        return None
    offsets = np.frombuffer(md5.buffers()[1], np.int32)[md5.offset : md5.offset + len(md5) + 1]
    if not (np.diff(offsets) == 32).all():
        return None
    data = np.frombuffer(md5.buffers()[2], np.uint8)
    if n_digits == 32:
        digits = HEX_VALUE[data[offsets[0] : offsets[-1]]].reshape(-1, 32)
    else:
        digits = HEX_VALUE[data[offsets[:-1, None] + np.arange(n_digits)]]
    return None if (digits == 255).any() else digits


def md5_keys(md5: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each 32-hex-digit hash as its 16 raw bytes (``S16``): exact, comparable, sortable, and about a
    sixth of the memory of a Python string per hash."""
    digits = hex_digits(md5.cast(pa.string()) if md5.type != pa.string() else md5)
    if digits is None:
        raise ValueError("md5 column: every value must be 32 hexadecimal digits")
    pairs = digits.reshape(-1, 16, 2)
    return np.ascontiguousarray((pairs[..., 0] << 4) | pairs[..., 1]).view("S16").ravel()
