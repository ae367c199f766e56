"""Write outputs atomically: to a temporary sibling first, then rename into place.

A killed or failing stage must never leave a half-written parquet, JSON or CSV that a
later stage (or DVC) would take for a finished output. Every temporary name here (and every
scratch folder a stage makes beside its outputs) is ``.<name>.<random>.tmp``: ``.dvcignore``
keeps DVC from hashing such leftovers into an output, and :func:`clear_stale` removes those a
killed run left before the next run starts.

``tempfile`` creates files 0600 and folders 0700 whatever the umask; outputs get the modes a
plain ``open`` would give (0666 / 0777 less the umask), so a team sharing a data folder can
read each other's outputs.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


SCRATCH_GLOB = ".*.tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_mode(path: Path) -> Path:
    """Give a temp file or folder the mode a plain ``open`` / ``mkdir`` would have given it."""
    path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())
    return path


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Defer SIGINT / SIGTERM while a temp is created and recorded, or while temps are moved or removed,
    so an interrupt can never leave an untracked temp or half the outputs replaced; a signal that came
    is re-sent on the way out and unwinds from there.

    Blocking the signals in the main thread (``pthread_sigmask``) is not enough: the kernel then hands a
    process-directed signal to another thread (BLAS, arrow, tqdm: every stage has some), and Python still
    runs the handler in the main thread at its next bytecode, inside the moment it was meant to spare.
    Swapping the Python-level handlers for a recorder holds whichever thread took the signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():  # None: a handler not set from Python, which cannot be put back
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if came:
            signal.raise_signal(came[0])


def _new_temp(target: Path, folder: bool = False) -> Path:
    """An empty temp file (or folder) beside ``target`` (call with signals deferred)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    naming = {"prefix": f".{target.name}.", "suffix": ".tmp", "dir": target.parent}
    if folder:
        return Path(tempfile.mkdtemp(**naming))
    fd, name = tempfile.mkstemp(**naming)
    os.close(fd)
    return Path(name)


def _remove(tmp: Path | None) -> None:
    if tmp is not None and tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()


@contextlib.contextmanager
def _temp(target: Path, folder: bool = False) -> Iterator[Path]:
    """A temp file (or folder) beside ``target`` with a plain mode, removed on exit unless renamed away.

    Made with signals deferred and known to the cleanup before any interrupt can land (the deferred
    signal is re-raised inside the ``try``), and removed with signals deferred too: no moment leaves
    an untracked or half-removed temp. Every temp and scratch folder of this module is one of these."""
    tmp = None
    try:
        with _signals_deferred():
            tmp = _new_temp(target, folder)
        _plain_mode(tmp)
        yield tmp
    finally:
        with _signals_deferred():
            _remove(tmp)


@contextlib.contextmanager
def scratch_dir(near: str | Path, name: str) -> Iterator[str]:
    """A scratch folder next to ``near`` (same disk), named like every temp here, removed on exit."""
    with _temp(Path(near) / name, folder=True) as made:
        yield str(made)


def clear_stale(paths: Iterable[str | Path]) -> list[Path]:
    """Remove the ``.*.tmp`` leftovers of a killed run in each folder of ``paths`` and beside each
    path (where temps of that path are made); returns what was removed."""
    folders = set()
    for p in map(Path, paths):
        folders.add(p.parent)
        if p.is_dir():
            folders.add(p)
    removed = []
    for folder in sorted(folders):
        for stale in folder.glob(SCRATCH_GLOB) if folder.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    with _temp(path) as tmp:
        yield tmp
        with _signals_deferred():
            os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole only on success."""
    path = Path(path)
    with _temp(path, folder=True) as tmp:
        yield tmp
        with _signals_deferred():  # the old folder goes only once the new one is in place
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}.tmp")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def publish(outputs: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Stage several outputs in temp files and move them all into place only if every one succeeded.

    Yields a mapping name -> temporary path; on success each temp file replaces its target. The temps
    follow :func:`_temp`'s rules, with one deferral over the whole cleanup (an interrupt landing between
    two removals would leave the remaining temps behind).
    """
    tmps: dict[str, Path] = {}
    try:
        for name, target in outputs.items():
            with _signals_deferred():
                tmps[name] = _new_temp(target)
            _plain_mode(tmps[name])
        yield tmps
        with _signals_deferred():  # all outputs move, or none: an interrupt waits for the last rename
            for name, target in outputs.items():
                os.replace(tmps[name], target)
    finally:
        with _signals_deferred():
            for tmp in tmps.values():
                _remove(tmp)
