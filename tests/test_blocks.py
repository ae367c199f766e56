"""``iter_blocks`` walks the length prefixes through a buffer; it must cut the same blocks and raise
the same framing errors as the one-``pread``-per-document walk it replaced (kept here as reference)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import bson
import numpy as np
import pytest

from cdiscount import blocks
from cdiscount.blocks import _framing_error, iter_blocks
from cdiscount.bson_io import MAX_DOCUMENT


def one_pread_per_document(path: Path, block_size: int):
    """The previous ``iter_blocks``, verbatim."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        start = pos = 0
        prev = None
        head = os.pread(fd, 4, 0)
        while pos < size:
            length = struct.unpack("<i", head)[0] if len(head) == 4 else 0
            if length < 5 or length > MAX_DOCUMENT or pos + length > size:
                raise _framing_error(fd, path, size, pos, prev)
            tail = os.pread(fd, 5, pos + length - 1)
            if tail[0] != 0 and len(tail) == 5 and not 5 <= struct.unpack("<i", tail[1:])[0] <= MAX_DOCUMENT:
                raise _framing_error(fd, path, size, pos, prev)
            if pos + length - start > block_size and pos > start:
                yield start, pos - start
                start = pos
            prev, pos, head = pos, pos + length, tail[1:]
        if pos > start:
            yield start, pos - start
    finally:
        os.close(fd)


def _outcome(walk, path: Path, block_size: int):
    try:
        return list(walk(path, block_size))
    except Exception as e:
        return type(e).__name__, str(e), getattr(e, "offset", None), getattr(e, "product_id", None)


def _files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    raws = [bson.encode({"_id": i, "imgs": [{"picture": rng.bytes(int(rng.integers(0, 900)))}]}) for i in range(60)]
    data = b"".join(raws)
    variants = {"good": data, "stray_bytes": data + b"\x07\x00", "cut": data[:-5], "empty": b"", "tiny": b"\x05\x00"}
    for k in range(40):  # a broken length prefix or closing byte somewhere
        broken = bytearray(data)
        at = int(np.cumsum([0] + [len(r) for r in raws])[int(rng.integers(len(raws)))])
        if k % 2:
            broken[at : at + 4] = int(rng.integers(-10, 3000)).to_bytes(4, "little", signed=True)
        else:
            broken[at - 1] = int(rng.integers(1, 256))
        variants[f"broken{k}"] = bytes(broken)
    paths = []
    for name, content in variants.items():
        (tmp_path / f"{name}.bson").write_bytes(content)
        paths.append(tmp_path / f"{name}.bson")
    return paths


@pytest.mark.parametrize("chunk", [1, 7, 600, 5000, 4 << 20])
def test_buffered_walk_cuts_the_same_blocks_and_raises_the_same_errors(tmp_path: Path, monkeypatch,
                                                                       chunk: int) -> None:
    monkeypatch.setattr(blocks, "_SCAN_CHUNK", chunk)
    outcomes = set()
    for path in _files(tmp_path):
        for block_size in (1, 1500, 1 << 20):
            new, old = _outcome(iter_blocks, path, block_size), _outcome(one_pread_per_document, path, block_size)
            assert new == old, (path.name, block_size)
            outcomes.add("ok" if isinstance(new, list) else new[0])
    assert outcomes == {"ok", "InputError"}
