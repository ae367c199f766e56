"""OCR over many pictures: worker processes, a hard per-picture deadline, a text cache by MD5.

Why it is built this way:

- **One picture per message, a deadline per picture.** Each worker process holds one engine
  (models loaded once) and gets one picture at a time over a pipe; the parent knows which
  picture each worker holds and since when. A worker past ``timeout_s`` (+ ``grace_s``) is
  killed and replaced, and that picture alone gets an empty text and an ``error``. Engines
  with their own timeout (tesseract kills its subprocess) report it before that, without
  losing the worker. A process pool with chunks cannot tell which picture of a chunk hung.
- **Streaming.** ``items`` is consumed lazily, at most one picture per worker in flight, so
  memory does not grow with the dataset. Items may carry JPEG bytes, or a row of the decode
  stage's :class:`~cdiscount.bson_io.ImageStore` so that workers ``pread`` the bytes themselves.
- **A cache keyed by MD5.** Identical pictures (relisted products, shared covers) are read
  once; the cache parquet (``md5``, ``text``, ``seconds``, ``error``) is rewritten atomically
  every ``checkpoint_s`` and at the end, so a killed run resumes where it stopped. Its key (the
  engine's settings and the preprocessing config, in the parquet metadata) must match the
  current one, otherwise the old texts are discarded rather than mixed with new ones.
"""
from __future__ import annotations

import itertools
import json
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cdiscount.atomic import atomic_path
from cdiscount.ocr.engines import OcrEngine, OcrEngineUnavailable, OcrTimeout
from cdiscount.ocr.preprocess import PreprocessConfig, preprocess

log = logging.getLogger(__name__)

#: What an item carries besides its MD5: the JPEG bytes, a row of an ImageStore's index, or an
#: ``(offset, length)`` span of a :class:`SpanReader`'s file.
Payload = Union[bytes, bytearray, memoryview, int, np.integer, tuple]

CACHE_SCHEMA = pa.schema([("md5", pa.string()), ("text", pa.string()), ("seconds", pa.float32()),
                          ("error", pa.string())])
_KEY = b"cdiscount.ocr.cache_key"


@dataclass(frozen=True)
class OcrSummary:
    """What one :func:`read_images` call did, for ``metrics/ocr.json``."""

    images: int  #: distinct MD5s asked for
    read: int  #: of which OCR'd by this run (the rest came from the cache)
    cached: int
    errors: int  #: asked-for pictures whose OCR failed (``error`` set, text empty)
    timeouts: int
    non_empty_rate: float  #: share of asked-for pictures with a non-blank text
    mean_chars: float  #: mean text length over asked-for pictures (empty ones count as 0)
    seconds_per_image: float  #: mean OCR time of one picture on one core (decode + preprocess + engine)
    wall_seconds: float  #: this run, all workers together

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cache_key(engine: OcrEngine, cfg: PreprocessConfig) -> str:
    """What the cached texts depend on: the engine's settings and the preprocessing."""
    return json.dumps({"engine": engine.settings(), "preprocess": cfg.to_dict()}, sort_keys=True)


def load_cache(path: str | Path, key: str | None = None) -> pd.DataFrame:
    """The cache table (empty if absent). With ``key``, a cache written under another key is
    ignored (logged): its texts came from another engine or preprocessing."""
    path = Path(path)
    empty = CACHE_SCHEMA.empty_table().to_pandas()
    if not path.exists():
        return empty
    table = pq.read_table(path)
    stored = (table.schema.metadata or {}).get(_KEY, b"").decode()
    if key is not None and stored != key:
        log.warning("%s was written with other OCR settings; starting a new cache\n  was: %s\n  now: %s",
                    path, stored or "(none)", key)
        return empty
    return table.select(CACHE_SCHEMA.names).cast(CACHE_SCHEMA).to_pandas()


def write_cache(path: str | Path, frame: pd.DataFrame, key: str) -> None:
    """Write the cache atomically (a killed run never leaves half a parquet), sorted by MD5."""
    frame = frame.sort_values("md5", kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(frame[CACHE_SCHEMA.names], schema=CACHE_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({_KEY: key.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def summarize(rows: pd.DataFrame, *, read: int = 0, wall_seconds: float = 0.0) -> OcrSummary:
    """Summary statistics of cache rows (one per distinct picture)."""
    n = len(rows)
    text = rows["text"].fillna("").astype(str)
    err = rows["error"].fillna("").astype(str)
    secs = rows["seconds"].to_numpy(dtype=np.float64)
    ok = err == ""
    return OcrSummary(
        images=n, read=read, cached=n - read,
        errors=int((~ok).sum()), timeouts=int(err.str.startswith("timeout").sum()),
        non_empty_rate=float((text.str.strip() != "").mean()) if n else 0.0,
        mean_chars=float(text.str.len().mean()) if n else 0.0,
        seconds_per_image=float(secs[ok.to_numpy()].mean()) if ok.any() else 0.0,
        wall_seconds=float(wall_seconds),
    )


class SpanReader:
    """``pread`` of ``(offset, length)`` spans of one file (e.g. the source BSON, with the spans
    from ``{split}_images.parquet``'s ``jpeg_offset`` / ``jpeg_length``).

    Holds nothing but the path, so workers cost no memory for the index, unlike an ImageStore,
    which keeps the whole split's index (about 40 bytes a picture) in every worker.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: file of the picture spans not found")
        self._fd: int | None = None
        self._pid = -1

    def read_span(self, offset: int, length: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():  # re-open after fork
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        data = os.pread(self._fd, int(length), int(offset))
        if len(data) != int(length):
            raise ValueError(f"{self.path}: span at byte {offset} is past the end of the file (changed since decode?)")
        return data

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_fd": None, "_pid": -1}


def _ocr_one(engine: OcrEngine, cfg: PreprocessConfig, store: Any, md5: str, payload: Payload) -> tuple:
    """Read one picture; never raises except for an engine that can't run at all."""
    t0 = time.perf_counter()
    try:
        if isinstance(payload, (int, np.integer)):
            if store is None:
                raise ValueError("item gives an image-index row but read_images got no store")
            data = store.read_row(int(payload))
        elif isinstance(payload, tuple):
            if not isinstance(store, SpanReader):
                raise ValueError("item gives an (offset, length) span but read_images got no SpanReader store")
            data = store.read_span(*payload)
        else:
            data = bytes(payload)
        text, error = engine.read(preprocess(data, cfg)), ""
    except OcrEngineUnavailable:
        raise
    except OcrTimeout as e:
        text, error = "", f"timeout: {e}"
    except Exception as e:  # noqa: BLE001 - one unreadable picture must not stop a run of millions
        text, error = "", f"{type(e).__name__}: {e}"
    return md5, text, time.perf_counter() - t0, error


def _worker_main(conn: mpc.Connection, engine: OcrEngine, cfg: PreprocessConfig, store: Any) -> None:
    """A worker: load the engine, then read one picture per message until told to stop (None)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # this worker process only: one picture per core
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract's OpenMP, inherited by its subprocess
    try:
        engine.warm_up()
        conn.send(("ready",))
        while True:
            msg = conn.recv()
            if msg is None:
                return
            conn.send(("done", _ocr_one(engine, cfg, store, *msg)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except BaseException as e:  # noqa: BLE001 - the parent turns this into an error message
        try:
            conn.send(("fatal", f"{type(e).__name__}: {e}"))
        except (BrokenPipeError, OSError):
            pass


class _Worker:
    def __init__(self, ctx: Any, engine: OcrEngine, cfg: PreprocessConfig, store: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, engine, cfg, store), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.born = time.monotonic()
        self.job: tuple[str, Payload] | None = None
        self.since = 0.0

    def give(self, job: tuple[str, Payload]) -> None:
        self.conn.send(job)
        self.job, self.since = job, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


def _unique_new(items: Iterable[tuple[str, Payload]], skip: set[str], seen: set[str],
                bar: tqdm) -> Iterator[tuple[str, Payload]]:
    """Items whose MD5 is neither done nor already queued; every item consumed ticks the bar."""
    for md5, payload in items:
        md5 = str(md5)
        bar.update(1)
        if md5 in seen:
            continue
        seen.add(md5)
        if md5 not in skip:
            yield md5, payload


def read_images(
    items: Iterable[tuple[str, Payload]],
    engine: OcrEngine,
    cfg: PreprocessConfig,
    cache_path: str | Path,
    *,
    store: Any = None,
    workers: int | None = None,
    timeout_s: float = 30.0,
    grace_s: float = 5.0,
    start_timeout_s: float = 300.0,
    checkpoint_s: float = 300.0,
    retry_errors: bool = False,
    start_method: str = "forkserver",
    progress: bool = True,
    total: int | None = None,
) -> OcrSummary:
    """OCR every distinct picture of ``items`` not yet in the cache at ``cache_path``; update the cache.

    ``items`` yields ``(md5, payload)`` pairs, payload being JPEG bytes; or a row of ``store``
    = an :class:`~cdiscount.bson_io.ImageStore` (``cdiscount.bson_io.open_store(interim, 'train')``,
    rows of ``{split}_images.parquet``; see :func:`image_jobs`); or an ``(offset, length)`` span
    of ``store`` = a :class:`SpanReader` of the source BSON (see :func:`span_jobs`: the leanest
    at real scale, as workers then hold no index). ``workers``: processes (None = all
    cores, 0 = in this process, with no hard deadline: for tests and debugging). A picture
    taking more than ``timeout_s + grace_s`` gets its worker killed and an error row;
    ``retry_errors`` reads pictures whose cached row has an error again. ``start_method``
    'forkserver' keeps workers clean of the parent's threads (torch, onnxruntime); 'fork'
    starts faster. Returns statistics over the distinct MD5s of ``items`` (cached ones included).
    """
    t_start = time.monotonic()
    engine.check()
    key = cache_key(engine, cfg)
    cache_path = Path(cache_path)
    old = load_cache(cache_path, key)
    stale = cache_path.exists() and len(old) == 0  # absent, other settings or empty: (re)write it
    done = set(old.loc[old["error"] == "", "md5"] if retry_errors else old["md5"])
    seen: set[str] = set()
    new: list[tuple[str, str, float, str]] = []
    bar = tqdm(total=total if total is not None else _len(items), unit="img", desc=f"ocr {engine.name}",
               disable=not progress, mininterval=1.0)
    last_checkpoint = time.monotonic()

    def checkpoint(force: bool = False) -> None:
        nonlocal old, new, last_checkpoint
        if not force and time.monotonic() - last_checkpoint < checkpoint_s:
            return
        if new or force:
            if new:  # a re-read (retry_errors) replaces the old row
                fresh = pd.DataFrame(new, columns=CACHE_SCHEMA.names)
                old = pd.concat([old[~old["md5"].isin(fresh["md5"])], fresh], ignore_index=True)
            new = []
            write_cache(cache_path, old, key)
        last_checkpoint = time.monotonic()

    jobs = _unique_new(items, done, seen, bar)
    n_read = 0
    try:
        if workers == 0:
            for md5, payload in jobs:
                new.append(_ocr_one(engine, cfg, store, md5, payload))
                n_read += 1
                checkpoint()
        else:
            for row in _run_pool(jobs, engine, cfg, store, workers or os.cpu_count() or 1, timeout_s + grace_s,
                                 start_timeout_s, start_method):
                new.append(row)
                n_read += 1
                checkpoint()
        if new or stale or not cache_path.exists():
            checkpoint(force=True)
    except BaseException:
        if new:  # keep what was read (Ctrl-C, a failing engine): the re-run resumes from there
            checkpoint(force=True)
        raise
    finally:
        bar.close()
    asked = old[old["md5"].isin(seen)]
    return summarize(asked, read=n_read, wall_seconds=time.monotonic() - t_start)


def _len(items: Any) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


def _run_pool(jobs: Iterator[tuple[str, Payload]], engine: OcrEngine, cfg: PreprocessConfig, store: Any,
              n_workers: int, deadline_s: float, start_timeout_s: float, start_method: str,
              ) -> Iterator[tuple[str, str, float, str]]:
    """Yield one cache row per job, from ``n_workers`` processes, killing any past ``deadline_s``."""
    first = next(jobs, None)
    if first is None:  # everything cached: start no process
        return
    jobs = itertools.chain([first], jobs)
    ctx = mp.get_context(start_method)
    pool = [_Worker(ctx, engine, cfg, store) for _ in range(n_workers)]
    exhausted = False
    deaths_in_a_row = 0  # workers dying on every picture: the engine is broken, not the pictures
    try:
        while True:
            for w in pool:  # hand out work
                if w.ready and w.job is None and not exhausted:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                    else:
                        w.give(job)
            busy = [w for w in pool if w.job is not None]
            if exhausted and not busy:
                return
            now = time.monotonic()
            ends = [w.since + deadline_s for w in busy] + [w.born + start_timeout_s for w in pool if not w.ready]
            wait_s = max(0.0, min(ends) - now) if ends else 1.0
            ready_conns = mpc.wait([w.conn for w in pool], timeout=min(wait_s, 1.0))
            for i, w in enumerate(pool):
                if w.conn in ready_conns:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):  # the process died (crash, OOM kill)
                        w.proc.join(timeout=5)  # its pipe closes just before it can be reaped
                        code = w.proc.exitcode
                        deaths_in_a_row += 1
                        if deaths_in_a_row > 2 * n_workers + 3:
                            raise RuntimeError(f"OCR workers keep dying (last exit code {code}): is {engine!r} broken?")
                        if w.job is not None:
                            yield w.job[0], "", 0.0, f"worker died (exit code {code})"
                        elif not w.ready:
                            raise RuntimeError(f"OCR worker died while loading {engine!r} (exit code {code})")
                        w.stop(kill=True)
                        pool[i] = _Worker(ctx, engine, cfg, store)
                        continue
                    if msg[0] == "ready":
                        w.ready = True
                    elif msg[0] == "done":
                        w.job, deaths_in_a_row = None, 0
                        yield msg[1]
                    else:  # fatal: the engine can't run at all; no point going on
                        raise OcrEngineUnavailable(f"OCR worker failed: {msg[1]}")
                elif w.job is not None and time.monotonic() - w.since > deadline_s:
                    md5 = w.job[0]
                    log.warning("OCR of %s took over %.0f s: worker killed", md5, deadline_s)
                    w.stop(kill=True)
                    pool[i] = _Worker(ctx, engine, cfg, store)
                    yield md5, "", float(deadline_s), f"timeout: killed after {deadline_s:g} s"
                elif not w.ready and time.monotonic() - w.born > start_timeout_s:
                    raise RuntimeError(f"OCR worker could not load {engine!r} within {start_timeout_s:g} s")
    finally:
        for w in pool:
            w.stop(kill=w.job is not None or not w.ready)


def image_jobs(md5s: Iterable[str], rows: Iterable[int] | None = None) -> Iterator[tuple[str, int]]:
    """``(md5, row)`` items for :func:`read_images` with an ImageStore as ``store`` (``rows``
    default: 0, 1, 2, ... i.e. every picture of ``{split}_images.parquet`` in order)."""
    if rows is None:
        rows = itertools.count()
    for md5, row in zip(md5s, rows):
        yield str(md5), int(row)


def span_jobs(md5s: Iterable[str], offsets: Iterable[int], lengths: Iterable[int]
              ) -> Iterator[tuple[str, tuple[int, int]]]:
    """``(md5, (offset, length))`` items for :func:`read_images` with a :class:`SpanReader` as
    ``store``: the columns ``md5``, ``jpeg_offset``, ``jpeg_length`` of ``{split}_images.parquet``."""
    for md5, offset, length in zip(md5s, offsets, lengths):
        yield str(md5), (int(offset), int(length))


__all__ = ["CACHE_SCHEMA", "OcrSummary", "SpanReader", "cache_key", "image_jobs", "load_cache", "read_images",
           "span_jobs", "summarize", "write_cache"]
