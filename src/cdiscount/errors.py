"""The project's own error types: what the user can fix (bad input, bad config, a missing tool).

Every :class:`CdiscountError` ends a stage or command with one readable line and exit status 2
(see :mod:`cdiscount.runner`); any other exception is a bug and keeps its traceback. Input
messages name the file, and where known the byte offset and the product ``_id``, so a user with
a 58 GB BSON can jump straight to the broken record.
"""
from __future__ import annotations

from pathlib import Path


class CdiscountError(Exception):
    """Base of the errors a user can act on."""


class ConfigError(CdiscountError, ValueError):
    """A params value that cannot work: names ``section.key``, the value and what is allowed."""


class InputError(CdiscountError):
    """Bad input: a malformed file, record or value."""

    def __init__(
        self,
        path: str | Path,
        what: str,
        *,
        offset: int | None = None,
        product_id: int | None = None,
    ) -> None:
        self.path = str(path)
        self.what = what
        self.offset = offset
        self.product_id = product_id
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        if self.product_id is not None:
            where.append(f"_id {self.product_id}")
        return f"{', '.join(where)}: {self.what}"

    def __reduce__(self):  # keep the fields when crossing a process boundary
        return (_rebuild, (self.path, self.what, self.offset, self.product_id))


def _rebuild(path: str, what: str, offset: int | None, product_id: int | None) -> InputError:
    return InputError(path, what, offset=offset, product_id=product_id)


class WorkerLost(CdiscountError, RuntimeError):
    """A worker process of a pool died mid-task (OOM killer, ``kill -9``).

    Raised instead of waiting forever for a result that will never come. ``where`` says what
    the dead worker was doing (file and byte range), ``hint`` which setting to lower.
    """

    def __init__(self, where: str, hint: str) -> None:
        self.where, self.hint = where, hint
        super().__init__(f"{where}: a worker process died (killed by the OOM killer or a signal?); re-run, or {hint}")

    def __reduce__(self):  # keep the fields when crossing a process boundary
        return (WorkerLost, (self.where, self.hint))
