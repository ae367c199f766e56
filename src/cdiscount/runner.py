"""How every stage script and the ``cdiscount`` tools start, log and fail.

A stage script (``stages/<name>.py``) hands its ``main`` to :func:`run_stage`, which parses the
common options, reads ``params.yaml`` and turns the project's own errors (bad input, bad
config, a missing OCR engine or weights: every :class:`~cdiscount.errors.CdiscountError`) into
one log line and exit status 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .errors import CdiscountError
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


def run_stage(main: Callable[[argparse.Namespace], Any], doc: str | None, argv: Sequence[str] | None = None,
              options: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Entry point of a stage script: ``args.params`` holds the parsed params file.

    ``options`` adds stage-specific arguments (e.g. the expert slot of ``specific``).
    """
    ap = common_options(argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter))
    if options:
        options(ap)
    args = ap.parse_args(argv)
    setup_logging(args.verbose)

    def go() -> None:
        args.params_path, args.params = args.params, load_params(args.params)
        main(args)

    return guarded(go)
