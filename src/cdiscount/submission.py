"""Write the Kaggle submission CSV and check one before it is uploaded.

Kaggle scores a submission minutes after a 30 MB upload and answers a malformed one with a
terse error, so :func:`validate_submission` checks everything Kaggle (and issue 6) needs
locally, in one streaming pass, and names the line of every problem: header, BOM, line
endings, encoding, columns, integers, one row per test product in ``test.bson`` order, and
every ``category_id`` in the taxonomy. The real test set has 1,768,182 products, so neither
function holds more than a few integer columns in memory.
"""
from __future__ import annotations

import gzip
import shutil
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .atomic import publish
from .errors import CdiscountError, InputError
from .sorted_ids import find_sorted

HEADER = b"_id,category_id"
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
#: Problems listed per kind before the rest are only counted: a broken writer breaks every line.
MAX_EXAMPLES = 5
#: Lines parsed per vectorised check; bounds the per-chunk Python lists.
CHUNK_LINES = 1 << 18
#: More digits than this cannot be an int64 (19 digits can overflow).
_MAX_DIGITS = 18


class SubmissionError(CdiscountError):
    """A submission that cannot be written as asked (the CLI exits 2 with the message)."""


def gz_path(csv_path: str | Path) -> Path:
    """The compressed copy written next to ``csv_path`` (``submission.csv`` -> ``submission.csv.gz``)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".gz")


def write_submission(
    test_ids: np.ndarray,
    category_ids: np.ndarray,
    out_csv: str | Path,
    *,
    gzip_copy: bool = True,
) -> list[Path]:
    """Write ``_id,category_id`` rows in the given order (``test.bson`` order), plus a ``.csv.gz``.

    ``\\n`` line endings, ASCII, no BOM, no index column. Both files appear together or not at
    all (a killed stage must not leave a CSV that looks finished). The gzip copy is what one
    uploads (6x smaller); it carries no timestamp, so the same predictions give the same bytes
    and DVC sees no change. Returns the paths written.
    """
    ids = _as_int64(test_ids, "test_ids")
    cats = _as_int64(category_ids, "category_ids")
    if len(ids) != len(cats):
        raise SubmissionError(f"{len(ids)} test _ids but {len(cats)} category_ids")
    if len(ids) and (ids.min() < 0 or cats.min() < 0):
        raise SubmissionError("negative _id or category_id: not a Cdiscount product or category")
    out_csv = Path(out_csv)
    targets = {"csv": out_csv}
    if gzip_copy:
        targets["gz"] = gz_path(out_csv)
    table = pa.table({"_id": pa.array(ids, pa.int64()), "category_id": pa.array(cats, pa.int64())})
    with publish(targets) as tmp:
        with open(tmp["csv"], "wb") as f:
            f.write(HEADER + b"\n")
            pacsv.write_csv(table, f, write_options=pacsv.WriteOptions(include_header=False))
        if gzip_copy:
            with open(tmp["csv"], "rb") as src, open(tmp["gz"], "wb") as raw, \
                    gzip.GzipFile(filename=out_csv.name, mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
    return list(targets.values())


def _as_int64(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise SubmissionError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise SubmissionError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# Reference data: the test _ids in file order, the taxonomy's category ids.


def read_test_ids(source: str | Path | pd.DataFrame | np.ndarray | Iterable[int]) -> np.ndarray:
    """Test product ``_id``s in ``test.bson`` order, from the decode stage's parquet, a BSON, or values.

    A BSON is scanned without decoding pictures: only each document's ``_id`` is read, so a
    14 GB ``test.bson`` costs one sequential read.
    """
    if isinstance(source, pd.DataFrame):
        if "_id" not in source.columns:
            raise InputError("<DataFrame>", "test products need an _id column")
        return source["_id"].to_numpy(dtype=np.int64)
    if not isinstance(source, (str, Path)):
        return np.asarray(list(source) if not isinstance(source, np.ndarray) else source, dtype=np.int64)
    path = Path(source)
    if not path.exists():
        raise InputError(path, "test products file not found")
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path, columns=["_id"]).column("_id").to_numpy().astype(np.int64, copy=False)
        except (pa.ArrowInvalid, KeyError) as e:
            raise InputError(path, f"cannot read the _id column: {e}") from e
    if path.suffix == ".bson":
        return np.fromiter(_bson_ids(path), dtype=np.int64)
    raise InputError(path, "test products must be a .parquet (decode stage) or a .bson file")


def _bson_ids(path: Path) -> Iterator[int]:
    """``_id`` of each document; Kaggle's files put an int32 ``_id`` first, anything else is decoded."""
    import bson

    from .blocks import iter_blocks
    from .bson_io import frame

    with open(path, "rb") as f:
        for base, n in iter_blocks(path, 8 << 20):
            f.seek(base)
            block = f.read(n)
            for start, length in frame(memoryview(block), base, path)[0]:
                head = block[start + 4 : start + 9]
                if head == b"\x10_id\x00":
                    yield struct.unpack_from("<i", block, start + 9)[0]
                elif head == b"\x12_id\x00":
                    yield struct.unpack_from("<q", block, start + 9)[0]
                else:
                    try:
                        doc = bson.decode(block[start : start + length])
                        yield int(doc["_id"])
                    except Exception as e:  # InvalidBSON, KeyError, a non-integer _id
                        raise InputError(path, f"document without an integer _id: {e!r}", offset=base + start) from e


def read_category_ids(source: str | Path | pd.DataFrame | np.ndarray | Iterable[int]) -> np.ndarray:
    """Sorted unique category ids of the taxonomy: ``category_names.csv``, ``taxonomy.parquet`` or values."""
    if isinstance(source, pd.DataFrame):
        ids = source["category_id"].to_numpy()
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(path, "category file not found")
        if path.suffix == ".parquet":
            ids = pq.read_table(path, columns=["category_id"]).column("category_id").to_numpy()
        else:
            from .taxonomy import read_category_names

            ids = read_category_names(path)["category_id"].to_numpy()
    else:
        ids = np.asarray(list(source) if not isinstance(source, np.ndarray) else source)
    return np.unique(ids.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Validation.


class _Problems:
    """Problems grouped by kind; each kind lists its first few lines, then only counts the rest."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        if n < MAX_EXAMPLES:
            self.items.append((kind, message))

    def messages(self) -> list[str]:
        out: list[str] = []
        for i, (kind, message) in enumerate(self.items):
            out.append(message)
            last_of_kind = all(k != kind for k, _ in self.items[i + 1 :])
            if last_of_kind and self.counts[kind] > MAX_EXAMPLES:
                out.append(f"... and {self.counts[kind] - MAX_EXAMPLES} more lines with {kind}")
        return out


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it starts with the gzip magic (whatever its name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _show(raw: bytes, limit: int = 60) -> str:
    """Quote a line as its bytes: a stray ``\\r`` or a Latin-1 byte shows as an escape, not as itself."""
    cut = raw[:limit]
    return "'" + repr(cut)[2:-1] + ("..." if len(raw) > limit else "") + "'"


class _Checker:
    """State of one validation pass: the reference arrays and what the rows seen so far hit."""

    def __init__(self, expected: np.ndarray, categories: np.ndarray | None, problems: _Problems) -> None:
        self.expected = expected  # test _ids in file order
        self.sorter = np.argsort(expected, kind="stable")
        self.sorted_ids = expected[self.sorter]
        dup = self.sorted_ids[1:] == self.sorted_ids[:-1]
        if dup.any():
            raise InputError("<test products>", f"_id {int(self.sorted_ids[1:][dup][0])} appears twice in the test set")
        self.first_line = np.zeros(len(expected), dtype=np.int64)  # by sorted position; 0 = not seen
        self.categories = categories
        self.problems = problems
        self.rows = 0  # rows with a readable _id so far
        self.n_unknown = self.n_dup = self.n_bad_category = 0
        self.order_mismatch: tuple[int, int, int, int | None] | None = None  # (line, row, got, expected)

    def check(self, first_line: int, skipped: list[int], ids: list[int], cats: list[int]) -> None:
        """Check a chunk of rows: ``ids[j]`` sits on line ``first_line + j`` shifted past ``skipped`` lines.

        ``cats[j] == -1`` marks a category that could not be read (already reported).
        """
        if not ids:
            return
        a = np.array(ids, dtype=np.int64)
        c = np.array(cats, dtype=np.int64)
        lines = _line_numbers(first_line, skipped, len(a))
        # order against test.bson, reported at the end only if the rows are otherwise right
        if self.order_mismatch is None:
            want = self.expected[self.rows : self.rows + len(a)]
            diff = np.flatnonzero(a[: len(want)] != want)
            if len(diff):
                j = int(diff[0])
                self.order_mismatch = (int(lines[j]), self.rows + j, int(a[j]), int(want[j]))
            elif len(a) > len(want):
                j = len(want)
                self.order_mismatch = (int(lines[j]), self.rows + j, int(a[j]), None)
        self.rows += len(a)
        # known / unknown / duplicate _ids
        pos = np.searchsorted(self.sorted_ids, a)
        known = pos < len(self.sorted_ids)
        known[known] = self.sorted_ids[pos[known]] == a[known]
        for j in np.flatnonzero(~known)[: max(0, MAX_EXAMPLES - self.n_unknown)]:
            self.problems.add("unknown _ids", f"line {lines[j]}: _id {a[j]} is not a product of the test set")
        self.n_unknown += int((~known).sum())
        kj = np.flatnonzero(known)
        p = pos[kj]
        # first occurrence within this chunk of each position, in line order
        order = np.argsort(p, kind="stable")
        ps = p[order]
        repeat = np.zeros(len(p), dtype=bool)
        repeat[order[1:][ps[1:] == ps[:-1]]] = True
        dup = repeat | (self.first_line[p] > 0)
        first_new = ~dup
        self.first_line[p[first_new]] = lines[kj[first_new]]
        for j in np.flatnonzero(dup)[: max(0, MAX_EXAMPLES - self.n_dup)]:
            self.problems.add("duplicate _ids", f"line {lines[kj[j]]}: duplicate _id {a[kj[j]]} "
                                                f"(first at line {self.first_line[p[j]]})")
        self.n_dup += int(dup.sum())
        # categories
        if self.categories is not None:
            readable = c >= 0
            cpos = np.searchsorted(self.categories, c)
            ok = cpos < len(self.categories)
            ok[ok] = self.categories[cpos[ok]] == c[ok]
            bad = np.flatnonzero(readable & ~ok)
            for j in bad[: max(0, MAX_EXAMPLES - self.n_bad_category)]:
                self.problems.add("unknown category_ids",
                                  f"line {lines[j]}: category_id {c[j]} is not in the taxonomy")
            self.n_bad_category += len(bad)

    def finish(self) -> None:
        """Set-level problems: counts of unknown, duplicate, missing rows; then the order."""
        p = self.problems
        if self.n_unknown:
            p.add("unknown _id count",
                  f"{_count(self.n_unknown, 'row has', 'rows have')} an _id that is not in the test set")
        if self.n_dup:
            p.add("duplicate _id count", f"{_count(self.n_dup, 'row repeats', 'rows repeat')} an _id already seen")
        missing_sorted = np.flatnonzero(self.first_line == 0)
        if len(missing_sorted):
            where = np.sort(self.sorter[missing_sorted])  # positions in test.bson order
            examples = ", ".join(f"{self.expected[i]} (test product #{i + 1})" for i in where[:MAX_EXAMPLES])
            more = f", ... ({len(where) - MAX_EXAMPLES} more)" if len(where) > MAX_EXAMPLES else ""
            p.add("missing _ids", f"{len(where)} of {len(self.expected)} test _ids have no row: {examples}{more}")
        if self.n_bad_category:
            p.add("unknown category_id count", f"{_count(self.n_bad_category, 'row has', 'rows have')} a "
                                               "category_id that is not in the taxonomy")
        if self.order_mismatch and not (self.n_unknown or self.n_dup or len(missing_sorted)):
            line, row, got, want = self.order_mismatch
            p.add("order", f"line {line}: _id {got}, but test product #{row + 1} of test.bson is _id {want}: "
                           "rows must follow test.bson order")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _line_numbers(first_line: int, skipped: list[int], n: int) -> np.ndarray:
    """Line of each of ``n`` readable rows: every line from ``first_line`` on that is not ``skipped``."""
    lines = np.arange(first_line, first_line + n + len(skipped), dtype=np.int64)
    return np.setdiff1d(lines, np.asarray(skipped, dtype=np.int64), assume_unique=True) if skipped else lines


def validate_submission(
    csv_path: str | Path,
    *,
    test_products: str | Path | pd.DataFrame | np.ndarray | Iterable[int],
    categories: str | Path | pd.DataFrame | np.ndarray | Iterable[int] | None = None,
) -> list[str]:
    """Every problem of a submission file (plain or gzip), each naming its line; empty = valid.

    ``test_products``: ``test_products.parquet`` from the decode stage, ``test.bson``, a
    DataFrame with ``_id``, or the ids in file order. ``categories``: ``category_names.csv``,
    ``taxonomy.parquet``, or ids (None skips that check). A missing file is an InputError,
    not a problem of the submission. One pass, chunks of :data:`CHUNK_LINES` rows: memory is
    four int64 columns of the test set's size, whatever the file holds.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise InputError(csv_path, "submission file not found")
    expected = read_test_ids(test_products)
    cat_ids = None if categories is None else read_category_ids(categories)
    problems = _Problems()
    checker = _Checker(expected, cat_ids, problems)
    crlf = lf = 0
    first_crlf = first_lf = 0
    ids: list[int] = []
    cats: list[int] = []
    skipped: list[int] = []
    chunk_first = 0
    lineno = 0
    try:
        with _open_maybe_gzip(csv_path) as f:
            for raw in f:
                lineno += 1
                if raw.endswith(b"\r\n"):
                    line = raw[:-2]
                    crlf += 1
                    first_crlf = first_crlf or lineno
                elif raw.endswith(b"\n"):
                    line = raw[:-1]
                    lf += 1
                    first_lf = first_lf or lineno
                else:
                    line = raw  # last line without a newline: harmless, Kaggle reads it
                if lineno == 1:
                    chunk_first = 2
                    if _check_header(line, problems):
                        continue
                    chunk_first = 1  # the first line is data: no header
                    line = line.removeprefix(_BOM)
                a, _, b = line.partition(b",")
                if a.isdigit() and b.isdigit() and len(a) <= _MAX_DIGITS and len(b) <= _MAX_DIGITS:
                    ids.append(int(a))
                    cats.append(int(b))
                else:
                    row = _diagnose(line, lineno, problems)
                    if row is None:
                        skipped.append(lineno)
                    else:
                        ids.append(row[0])
                        cats.append(row[1])
                if len(ids) + len(skipped) >= CHUNK_LINES:
                    checker.check(chunk_first, skipped, ids, cats)
                    chunk_first = lineno + 1
                    ids, cats, skipped = [], [], []
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt gzip stream
        problems.add("file", f"line {lineno + 1}: cannot read further ({type(e).__name__}: {e})")
    if lineno == 0:
        problems.add("file", f"empty file: expected the header {HEADER.decode()!r} and one row per test product")
    checker.check(chunk_first, skipped, ids, cats)
    checker.finish()
    if crlf and not lf:
        problems.add("line endings", f"Windows line endings (\\r\\n) on all {crlf} lines: use \\n")
    elif crlf:
        problems.add("line endings", f"mixed line endings: {_count(crlf, 'line ends', 'lines end')} with \\r\\n "
                                     f"(first: line {first_crlf}), {lf} with \\n (first: line {first_lf}): "
                                     "use \\n everywhere")
    return problems.messages()


def _check_header(line: bytes, problems: _Problems) -> bool:
    """Report BOM and header problems; True when line 1 is a header (right or wrong), False when it is data."""
    if line.startswith(_BOM):
        problems.add("file", "line 1: starts with a UTF-8 byte-order mark (BOM): write UTF-8 without BOM")
        line = line[len(_BOM):]
    if line == HEADER:
        return True
    a, sep, b = line.partition(b",")
    if sep and a.isdigit() and b.isdigit():
        problems.add("file", f"line 1: no header: expected {HEADER.decode()!r}, found a data row {_show(line)}")
        return False
    problems.add("file", f"line 1: wrong header: expected {HEADER.decode()!r}, found {_show(line)}")
    return True


def _diagnose(line: bytes, lineno: int, problems: _Problems) -> tuple[int, int] | None:
    """Report why a line is not ``<int>,<int>``; return the (_id, category_id or -1) still readable."""
    if not line:
        problems.add("empty lines", f"line {lineno}: empty line")
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.add("non-UTF-8 bytes", f"line {lineno}: not UTF-8: byte 0x{line[e.start]:02x} at column "
                                        f"{e.start + 1} ({_show(line)})")
        return None
    if b"\r" in line:
        problems.add("stray carriage returns", f"line {lineno}: carriage return (\\r) inside the line {_show(line)}")
        return None
    fields = line.split(b",")
    if len(fields) != 2:
        problems.add("wrong column counts", f"line {lineno}: expected 2 columns (_id,category_id), found "
                                            f"{len(fields)}: {_show(line)}")
        return None
    values: list[int] = []
    for name, field in zip(("_id", "category_id"), fields):
        if field.isdigit() and len(field) <= _MAX_DIGITS:
            values.append(int(field))
        else:
            problems.add("non-integer values", f"line {lineno}: {name} {_show(field)} is not a non-negative integer")
            values.append(-1)
    if values[0] < 0:
        return None
    return values[0], values[1]


def run_submission(labels: str | Path, test_products: str | Path, taxonomy: str | Path, out_csv: str | Path
                   ) -> dict[str, int]:
    """Stage ``submission``: the ensemble's test labels as a Kaggle CSV, validated before it counts.

    The rows follow ``test_products`` (``test.bson`` itself in the stage, or decode's parquet of
    it), whatever order the labels file has; a test product without a label, or any other
    defect, removes what was written and raises: nothing is left looking finished.
    """
    order = read_test_ids(test_products)
    cats, override_rows = _labels_in_order(Path(labels), order)
    written = write_submission(order, cats, out_csv)
    problems = validate_submission(out_csv, test_products=order, categories=taxonomy)
    if problems:
        for p in written:
            Path(p).unlink(missing_ok=True)
        raise SubmissionError(f"{out_csv}: " + "; ".join(problems))
    return {"rows": int(len(order)), "override_rows": override_rows}


def _labels_in_order(labels: Path, order: np.ndarray) -> tuple[np.ndarray, int]:
    """The labels' ``category_id`` in ``order``, and how many came from the duplicate override.

    Arrow columns and one argsort, not a pandas index of 1.77 M rows with a Python string each; the
    ensemble writes its labels in ``order`` already, which costs no sort at all."""
    table = pq.read_table(labels, columns=["_id", "category_id", "source"])
    ids = table.column("_id").to_numpy().astype(np.int64, copy=False)
    cats = table.column("category_id").to_numpy().astype(np.int64, copy=False)
    override_rows = int(pc.sum(pc.equal(table.column("source"), "override")).as_py() or 0)
    if np.array_equal(ids, order):
        return cats, override_rows
    sorter = np.argsort(ids, kind="stable")
    sorted_ids = ids[sorter]
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if len(repeated):
        raise InputError(labels, f"{len(np.unique(repeated))} test products have several labels, e.g. _id "
                                 f"{np.unique(repeated)[:5].tolist()}")
    at, found = find_sorted(order, sorted_ids)
    if not found.all():
        missing = order[~found]
        raise InputError(labels, f"{len(missing)} test products have no label, e.g. _id {missing[:5].tolist()}")
    return cats[sorter[at]], override_rows
