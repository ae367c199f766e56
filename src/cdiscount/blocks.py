"""Parallel streaming over a BSON file: one sequential scan, work spread over all cores.

The main process walks only the 4-byte length prefixes to cut the file into blocks of whole
documents (about ``block_size`` bytes each); each worker process sees its block through a
read-only memory map (no copy), runs a function over it and returns a small result, and
results come back in file order. No document bytes cross a process boundary and resident
memory does not grow with the file.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import bson
from tqdm import tqdm

from .bson_io import MAX_DOCUMENT, frame
from .errors import InputError

T = TypeVar("T")
#: fn(block, base_offset, context) -> result; ``block`` holds whole documents only.
BlockFn = Callable[[memoryview, int, Any], T]

_WORKER: dict[str, Any] = {}


def _run_block(path: str, base: int, n: int) -> Any:
    """Apply the function to ``n`` bytes at ``base``, seen through this process's read-only mmap.

    No copy: the block is the page cache itself. The pages are dropped from this process's
    mapping afterwards (``MADV_DONTNEED``), so resident memory stays flat whatever the file size.
    """
    if _WORKER.get("path") != path:
        if "mmap" in _WORKER:
            _WORKER["mmap"].close()
        with open(path, "rb") as f:
            _WORKER["mmap"] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        _WORKER["path"] = path
    mm = _WORKER["mmap"]
    if base + n > len(mm):
        raise InputError(path, f"file shorter than expected ({len(mm)} bytes; changed while reading?)", offset=base)
    view = memoryview(mm)[base : base + n]
    try:
        return _WORKER["fn"](view, base, _WORKER["context"])
    finally:
        view.release()
        start = base - base % mmap.PAGESIZE
        mm.madvise(mmap.MADV_DONTNEED, start, base + n - start)


def iter_blocks(path: str | Path, block_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, length)`` of consecutive runs of whole documents, about ``block_size`` long.

    Reads only the length prefixes. A prefix that cannot be a BSON document, or a document
    running past the end of the file, is an error naming the byte offset: the rest of the
    file cannot be framed, so this holds even in ``on_error: skip`` mode.
    """
    path = Path(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        start = pos = 0
        while pos < size:
            head = os.pread(fd, 4, pos)
            if len(head) < 4:
                raise InputError(path, f"truncated file: {len(head)} stray bytes after the last document", offset=pos)
            (length,) = struct.unpack("<i", head)
            if length < 5 or length > MAX_DOCUMENT:
                raise InputError(path, f"invalid BSON document length {length} (garbage bytes, or not a BSON file)",
                                 offset=pos)
            if pos + length > size:
                raise InputError(path, f"truncated file: document declares {length} bytes, only {size - pos} remain",
                                 offset=pos)
            if pos + length - start > block_size and pos > start:
                yield start, pos - start
                start = pos
            pos += length
        if pos > start:
            yield start, pos - start
    finally:
        os.close(fd)


def iter_documents(path: str | Path, block_size: int = 1 << 20) -> Iterator[tuple[int, dict]]:
    """Yield ``(offset, document)`` for every document of a BSON file, in one process.

    For tools (``cdiscount predict some.bson``) and tests; the decode stage uses :func:`map_blocks`.
    Same framing checks as the stage: bad lengths and truncation name the byte offset.
    """
    path = Path(path)
    with open(path, "rb") as f:
        for base, n in iter_blocks(path, block_size):
            f.seek(base)
            block = f.read(n)
            for start, length in frame(memoryview(block), base, path)[0]:
                try:
                    doc = bson.decode(block[start : start + length])
                except Exception as e:  # bson.errors.InvalidBSON and friends
                    raise InputError(path, f"invalid BSON document: {e}", offset=base + start) from e
                yield base + start, doc


def map_blocks(
    path: str | Path,
    fn: BlockFn,
    context: Any,
    *,
    workers: int | None = None,
    block_size: int = 32 * 1024 * 1024,
    progress: bool = True,
) -> Iterator[T]:
    """Yield ``fn(block, offset, context)`` for consecutive blocks of ``path``, in file order.

    ``workers=0`` runs everything in this process (debugging, tiny files).
    """
    path = Path(path)
    if workers is None:
        workers = os.cpu_count() or 1
    _WORKER.clear()
    _WORKER.update(fn=fn, context=context, block_size=block_size)
    pool = mp.get_context("fork").Pool(workers) if workers else None
    pending: deque[Any] = deque()
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"decode {path.name}",
               disable=not progress)
    try:
        for base, n in iter_blocks(path, block_size):
            if pool is None:
                yield _run_block(str(path), base, n)
                bar.update(n)
                continue
            pending.append((n, pool.apply_async(_run_block, (str(path), base, n))))
            while len(pending) > 2 * workers:  # bounded read-ahead
                n_done, res = pending.popleft()
                yield res.get()
                bar.update(n_done)
        while pending:
            n_done, res = pending.popleft()
            yield res.get()
            bar.update(n_done)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if "mmap" in _WORKER:
            _WORKER["mmap"].close()
        _WORKER.clear()
