"""How every stage script and the ``cdiscount`` tools start, log and fail.

A stage script (``stages/<name>.py``) hands its ``main`` to :func:`run_stage`, which parses the
common options, reads ``params.yaml`` and turns the project's own errors (bad input, bad
config, a missing OCR engine or weights: every :class:`~cdiscount.errors.CdiscountError`) into
one log line and exit status 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .atomic import clear_stale
from .errors import CdiscountError
from .malloc_tuning import flat_memory
from .params import load_params

log = logging.getLogger("cdiscount")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def common_options(ap: argparse.ArgumentParser, stage: bool = True) -> argparse.ArgumentParser:
    """``-v`` for everything; ``--params`` and ``-q`` for the stages."""
    if stage:
        ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        ap.add_argument("-q", "--quiet", dest="progress", action="store_false", help="no progress bars")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return ap


def guarded(fn: Callable[[], int | None]) -> int:
    """Run ``fn``; a project error becomes one logged line and exit status 2."""
    try:
        return fn() or 0
    except CdiscountError as e:
        log.error("%s", e)
        return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so ``finally`` blocks and context managers run."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's pre-emption, a container stop) unwinds like Ctrl-C, so every
    temp file and scratch folder is removed on the way out. Only in this process: forked pool
    workers keep the default action (their pools tell a terminated worker from a killed one)."""
    main_pid = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stage_paths(main: Callable[..., Any]) -> list[Path]:
    """The path constants of the stage script that defines ``main`` (what dvc.yaml lists for it)."""
    return [v for v in getattr(main, "__globals__", {}).values() if isinstance(v, Path)]


def run_stage(main: Callable[[argparse.Namespace], Any], doc: str | None, argv: Sequence[str] | None = None,
              options: Callable[[argparse.ArgumentParser], None] | None = None, *, streaming: bool = False) -> int:
    """Entry point of a stage script: ``args.params`` holds the parsed params file.

    ``options`` adds stage-specific arguments (e.g. the expert slot of ``specific``). ``streaming``: the
    stage holds one batch whatever the data size, and runs under :func:`~cdiscount.malloc_tuning.flat_memory`
    so that its resident memory says so.
    """
    ap = common_options(argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter))
    if options:
        options(ap)
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if streaming:
        log.debug("allocators: %s", flat_memory())

    def go() -> None:
        args.params_path, args.params = args.params, load_params(args.params)
        if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 writes: only it clears, before it starts
            for stale in clear_stale(stage_paths(main)):
                log.warning("removed %s, left by a killed run", stale)
        with sigterm_as_interrupt():
            main(args)

    try:
        return guarded(go)
    except KeyboardInterrupt as e:  # temps and scratch were removed on the way out
        log.error("%s: stopped; no output was replaced (re-run to finish)",
                  "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)")
        return 143 if isinstance(e, Terminated) else 130
