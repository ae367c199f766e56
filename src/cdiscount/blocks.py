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
import signal
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import bson
from tqdm import tqdm

from .bson_io import MAX_DOCUMENT, document_id, frame, length_error
from .errors import InputError, WorkerLost

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


#: Bytes of the file :func:`iter_blocks` reads at a time to walk the length prefixes.
_SCAN_CHUNK = 4 << 20


def iter_blocks(path: str | Path, block_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, length)`` of consecutive runs of whole documents, about ``block_size`` long.

    Reads only the length prefixes, and with each the byte before the next one: every document
    ends with 0x00. (Through a buffer of :data:`_SCAN_CHUNK` bytes: one ``pread`` per document
    cost the main process more than a worker's whole share on small-picture files.) A prefix that
    cannot be right, or a document running past the end of the file, is an error naming the byte
    offset (and the ``_id`` where it can be read): the rest of the file cannot be framed, so this
    holds even in ``on_error: skip`` mode.
    """
    path = Path(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    unpack = struct.Struct("<i").unpack_from
    try:
        start = pos = 0
        prev = None
        buf, at, stop = b"", 0, 0  # buf holds the file's bytes [at, stop)
        while pos < size:  # a tight loop: once per document (millions)
            if pos + 4 > stop:
                buf, at = os.pread(fd, max(_SCAN_CHUNK, 4), pos), pos
                stop = at + len(buf)
            length = unpack(buf, pos - at)[0] if pos + 4 <= stop else 0
            end = pos + length
            if not 5 <= length <= MAX_DOCUMENT or end > size:
                raise _framing_error(fd, path, size, pos, prev)
            if end + 4 > stop and stop < size:  # the closing byte and the next prefix must be in buf
                buf, at = os.pread(fd, max(_SCAN_CHUNK, length + 4), pos), pos
                stop = at + len(buf)
            tail = end - 1 - at
            if buf[tail] and end + 4 <= size and not 5 <= unpack(buf, tail + 1)[0] <= MAX_DOCUMENT:
                raise _framing_error(fd, path, size, pos, prev)
            if end - start > block_size and pos > start:
                yield start, pos - start
                start = pos
            prev, pos = pos, end
        if pos > start:
            yield start, pos - start
    finally:
        os.close(fd)


def _framing_error(fd: int, path: Path, size: int, pos: int, prev: int | None) -> InputError:
    """Why the document at ``pos`` cannot be framed, naming the culprit document.

    The culprit may be the previous document: a prefix too small by a few bytes still lands
    on something, and the garbage is found one document later. So a document whose elements
    end elsewhere than its prefix says is blamed first ("bad length prefix", with its ``_id``);
    a document that genuinely runs past the end of the file is a truncated file.
    """
    start = pos if prev is None else prev
    window = os.pread(fd, min(size - start, 2 * MAX_DOCUMENT + 8), start)
    for at in ([] if prev is None else [prev]) + [pos]:
        err = length_error(window, at - start, path, end_is_boundary=start + len(window) == size, base=start)
        if err is not None:
            return err
    rel = pos - start
    if size - pos < 4:
        return InputError(path, f"truncated file: {size - pos} stray bytes after the last document", offset=pos)
    (length,) = struct.unpack_from("<i", window, rel)
    pid = document_id(window, rel)
    if length < 5 or length > MAX_DOCUMENT:
        return InputError(path, f"bad length prefix: invalid BSON document length {length} (garbage bytes, or not "
                                "a BSON file)", offset=pos, product_id=pid)
    if pos + length > size:
        return InputError(path, f"truncated file: document declares {length} bytes, only {size - pos} remain",
                          offset=pos, product_id=pid)
    return InputError(path, f"bad length prefix: the document declares {length} bytes, but they do not end with "
                            "the 0x00 that closes a document and no document starts after them",
                      offset=pos, product_id=pid)


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
                    err = length_error(block, start, path, end_is_boundary=True, base=base)
                    raise err or InputError(path, f"invalid BSON document: {e}", offset=base + start,
                                            product_id=document_id(block, start)) from e
                yield base + start, doc


def _claim_slot() -> int:
    """This worker's row in the shared table of blocks in progress (claimed on its first block)."""
    if "slot" not in _WORKER:
        counter = _WORKER["next_slot"]
        with counter.get_lock():
            _WORKER["slot"] = counter.value
            counter.value += 1
    return _WORKER["slot"]


def _tracked_block(path: str, base: int, n: int) -> Any:
    """:func:`_run_block`, with ``(pid, base, n)`` in the shared table while it runs, so that the
    parent can tell which block a worker that dies (OOM killer, ``kill -9``) was holding."""
    row = 3 * _claim_slot()
    table = _WORKER["in_progress"]
    table[row + 1], table[row + 2], table[row] = base, n, os.getpid()
    try:
        return _run_block(path, base, n)
    finally:
        table[row] = 0


def _lost_blocks(table: Any, procs: dict[int, Any]) -> list[tuple[int, int, int | None]]:
    """``(base, n, exitcode)`` of the blocks held by dead workers, once the pool has shut down.

    A broken pool terminates its other workers (SIGTERM), so a block whose worker ended
    otherwise is the culprit; if that cannot be told apart, every block then in progress."""
    held = [(table[r + 1], table[r + 2], procs[table[r]].exitcode if table[r] in procs else None)
            for r in range(0, len(table), 3) if table[r]]
    culprits = [h for h in held if h[2] not in (None, 0, -signal.SIGTERM)]
    return culprits or held


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return f"signal {number}"


def _worker_lost(path: Path, lost: list[tuple[int, int, int | None]], waiting: tuple[int, int]) -> WorkerLost:
    """The error for a dead worker: the file and byte range(s) it held (else the block awaited)."""
    if not lost:
        lost = [(*waiting, None)]
    ranges = " or ".join(f"[{base}, {base + n})" for base, n, _ in lost)
    codes = sorted({code for *_, code in lost if code is not None and code < 0})
    how = f" (worker ended by {', '.join(_signal_name(-c) for c in codes)})" if codes else ""
    return WorkerLost(f"{path}, bytes {ranges}{how}", "lower decode.workers / decode.block_size_mb")


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

    ``workers=0`` runs everything in this process (debugging, tiny files). Workers are forked
    with ``fn`` and ``context`` in a module global (nothing pickled but offsets and results).
    A worker that dies (OOM killer, ``kill -9``) raises :class:`~cdiscount.errors.WorkerLost`
    naming the block it held: ``concurrent.futures`` notices the death, a bare pool would wait forever.
    """
    path = Path(path)
    if workers is None:
        workers = os.cpu_count() or 1
    _WORKER.clear()
    _WORKER.update(fn=fn, context=context, block_size=block_size)
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"decode {path.name}",
               disable=not progress)
    try:
        if workers:
            yield from _map_parallel(path, workers, block_size, bar)
        else:
            for base, n in iter_blocks(path, block_size):
                yield _run_block(str(path), base, n)
                bar.update(n)
    finally:
        bar.close()
        if "mmap" in _WORKER:
            _WORKER["mmap"].close()
        _WORKER.clear()


def _map_parallel(path: Path, workers: int, block_size: int, bar: tqdm) -> Iterator[Any]:
    """The worker-pool half of :func:`map_blocks`: bounded read-ahead, results in file order."""
    ctx = mp.get_context("fork")
    table = ctx.Array("q", 3 * workers, lock=False)  # (pid, base, n) of the block each worker runs
    _WORKER.update(in_progress=table, next_slot=ctx.Value("i", 0))
    before = set(mp.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    procs: dict[int, Any] = {}
    pending: deque[tuple[int, int, Future]] = deque()
    try:
        for base, n in iter_blocks(path, block_size):
            pending.append((base, n, pool.submit(_tracked_block, str(path), base, n)))
            if not procs:  # forked all at once on the first submit; kept to read exit codes later
                procs = {p.pid: p for p in set(mp.active_children()) - before}
            while len(pending) > 2 * workers:  # bounded read-ahead
                yield _next_result(pending, bar)
        while pending:
            yield _next_result(pending, bar)
    except BrokenProcessPool:  # from a result or from submit, whichever comes first
        pool.shutdown(wait=True, cancel_futures=True)  # joins the workers: their exit codes are known
        raise _worker_lost(path, _lost_blocks(table, procs), pending[0][:2] if pending else (0, 0)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _next_result(pending: deque[tuple[int, int, Future]], bar: tqdm) -> Any:
    """Wait for the oldest block's result; it leaves ``pending`` only once it has one."""
    res = pending[0][2].result()
    bar.update(pending.popleft()[1])
    return res
