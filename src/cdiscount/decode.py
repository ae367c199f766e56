"""Stage ``decode``: index every product and picture of the Kaggle BSON files.

Writes per-product and per-image parquet tables (byte offsets into the source BSON and the
MD5 of every JPEG), the indexed taxonomy, and counts for DVC. Bad records are either a clear
error (default) or, with ``on_error: skip``, logged, counted and listed in a ``*_skipped``
table: nothing is dropped silently.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bson
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path, publish, scratch_dir, write_json
from .blocks import map_blocks
from .bson_io import (document_id, frame, is_jpeg, jpeg_problem, kaggle_layout, kaggle_spans, length_error,
                      picture_offsets, whole_jpegs)
from .errors import InputError
from .params import Section
from .parquet_file import parquet_file
from .sorted_ids import continues_ascending
from .taxonomy import load_taxonomy

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
PRODUCT_SCHEMA = {
    "train": pa.schema([("_id", pa.int64()), ("category_id", pa.int64()), ("n_imgs", pa.int32()),
                        ("offset", pa.int64()), ("length", pa.int32())]),
    "test": pa.schema([("_id", pa.int64()), ("n_imgs", pa.int32()), ("offset", pa.int64()), ("length", pa.int32())]),
}
IMAGE_SCHEMA = {
    "train": pa.schema([("_id", pa.int64()), ("category_id", pa.int64()), ("img_idx", pa.int32()),
                        ("jpeg_offset", pa.int64()), ("jpeg_length", pa.int32()), ("md5", pa.string())]),
    "test": pa.schema([("_id", pa.int64()), ("img_idx", pa.int32()), ("jpeg_offset", pa.int64()),
                       ("jpeg_length", pa.int32()), ("md5", pa.string())]),
}
SKIPPED_SCHEMA = pa.schema([("offset", pa.int64()), ("_id", pa.int64()), ("reason", pa.string()),
                            ("message", pa.string())])


@dataclass(frozen=True)
class BlockContext:
    """What a worker needs to validate records (sent once, at fork)."""

    path: str
    labelled: bool
    category_ids: frozenset[int]
    parts_dir: str


@dataclass
class BlockResult:
    """What a worker hands back: the tables themselves go to part files, not through a pipe."""

    base: int
    ids: np.ndarray  # the block's product ids and picture counts: decode_file keeps a summary of them
    n_imgs: np.ndarray
    errors: list[tuple[int, int | None, str, str]] = field(default_factory=list)
    nbytes: int = 0


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_document(doc: Any, ctx: BlockContext) -> list[bytes]:
    """Validate one decoded document and return its pictures; raise ``_Bad(reason, message, _id)``."""
    pid = doc.get("_id")
    if not _is_int(pid):
        raise _Bad("bad_id", f"'_id' must be an integer, got {pid!r:.40}", None)
    imgs = doc.get("imgs")
    if not isinstance(imgs, list) or not imgs:
        what = "missing 'imgs'" if imgs is None else f"'imgs' must be a non-empty list, got {imgs!r:.40}"
        raise _Bad("missing_imgs", what, pid)
    if ctx.labelled:
        cat = doc.get("category_id")
        if cat is None:
            raise _Bad("missing_category", "missing 'category_id'", pid)
        if not _is_int(cat):
            raise _Bad("bad_category", f"'category_id' must be an integer, got {cat!r:.40}", pid)
        if cat not in ctx.category_ids:
            raise _Bad("unknown_category", f"category_id {cat} is not in category_names.csv", pid)
    pictures = []
    for i, img in enumerate(imgs):
        pic = img.get("picture") if isinstance(img, dict) else None
        if not isinstance(pic, bytes):
            raise _Bad("bad_picture", f"imgs[{i}] has no binary 'picture'", pid)
        if not is_jpeg(pic):
            raise _Bad("not_jpeg", f"imgs[{i}] is not a JPEG (starts with {pic[:8].hex()})", pid)
        problem = jpeg_problem(pic)
        if problem:
            raise _Bad("bad_jpeg", f"imgs[{i}] is not a whole JPEG: {problem}", pid)
        pictures.append(pic)
    return pictures


def _decode_document(block: memoryview, start: int, length: int, base: int, path: str) -> Any:
    """``bson.decode`` of one document, or a ``_Bad`` for a broken one.

    A broken document whose elements end elsewhere than its length prefix says (and a document
    starts there) has a bad prefix, not a bad record: the framing of the file is wrong from
    there on, so that is raised even in skip mode.
    """
    try:
        return bson.decode(block[start : start + length])
    except Exception as e:  # bson.errors.InvalidBSON, InvalidDocument, UnicodeDecodeError...
        message = f"invalid BSON document: {e}"
    # raised out here: an exception context would keep a view of the mmap alive
    framing = length_error(block.obj, base + start, path, end_is_boundary=True)  # the whole file's mmap
    if framing is not None:
        raise framing
    return _Bad("invalid_bson", message, document_id(block, start))


class _Bad(Exception):
    def __init__(self, reason: str, message: str, product_id: int | None) -> None:
        super().__init__(message)
        self.reason, self.message, self.product_id = reason, message, product_id


def _picture_offsets(buf: Any, pictures: list[bytes], start: int, end: int, doc: dict) -> list[int]:
    """:func:`picture_offsets`, a failure being a bad record (with its ``_id``), not a bare crash."""
    try:
        return picture_offsets(buf, pictures, start, end)
    except ValueError as e:
        raise _Bad("bad_picture", f"{e} (unusual binary encoding?)", doc["_id"]) from None


@functools.lru_cache(maxsize=4)
def _category_array(category_ids: frozenset[int]) -> np.ndarray:
    return np.array(sorted(category_ids), dtype=np.int64)


@dataclass
class _Rows:
    """Index rows of some documents of a block, keyed by the document's row in the block."""

    doc: np.ndarray  # [products] document row in the block
    ids: np.ndarray
    cats: np.ndarray
    n_imgs: np.ndarray
    pic_doc: np.ndarray  # [images] document row in the block
    pic_idx: np.ndarray
    pic_start: np.ndarray  # offset in the block
    pic_len: np.ndarray
    md5: np.ndarray  # [images, 16] uint8: the MD5 digests


def _fast_rows(block: memoryview, starts: np.ndarray, lengths: np.ndarray, ctx: BlockContext) -> _Rows:
    """Index, in a few array operations per block, the documents laid out exactly as Kaggle's whose
    category is known and whose pictures are whole JPEGs (:func:`kaggle_layout`, :func:`whole_jpegs`);
    every other document is left to :func:`_slow_rows` (the general path, with its error messages).

    Only the MD5s remain a Python loop (one C call per picture, over views of the mmap: no copy).
    """
    b = np.frombuffer(block, dtype=np.uint8)
    try:
        lay = kaggle_layout(b, starts, lengths, labelled=ctx.labelled)
        ok = lay.ok
        if ctx.labelled:
            ok &= np.isin(lay.categories, _category_array(ctx.category_ids))
        jpeg_ok = whole_jpegs(b, lay.pic_start, lay.pic_len)
        ok[lay.pic_doc[~jpeg_ok]] = False
        docs = np.flatnonzero(ok)
        pics = ok[lay.pic_doc]
        pic_start, pic_len = lay.pic_start[pics], lay.pic_len[pics]
        md5 = hashlib.md5
        digests = b"".join([md5(block[a : a + n]).digest() for a, n in zip(pic_start.tolist(), pic_len.tolist())])
        return _Rows(docs, lay.ids[docs], lay.categories[docs], lay.n_imgs[docs], lay.pic_doc[pics],
                     lay.pic_idx[pics], pic_start, pic_len, np.frombuffer(digests, np.uint8).reshape(-1, 16))
    except BaseException as e:  # a traceback holding ``b`` would keep the mmap's view exported
        traceback.clear_frames(e.__traceback__)
        raise
    finally:
        del b


def _slow_rows(block: memoryview, base: int, ctx: BlockContext, spans: np.ndarray, docs: np.ndarray,
               errors: list[tuple[int, int | None, str, str]]) -> _Rows:
    """The general path, one document at a time: ``bson.decode`` and the checks with their messages
    (:func:`_check_document`); bad records go to ``errors``."""
    prod: list[tuple[int, int, int, int]] = []
    imgs: list[tuple[int, int, int, int, str]] = []
    buf = block.obj  # the mmap behind the view: has .find, no copy
    for row in docs.tolist():
        start, length = int(spans[row, 0]), int(spans[row, 1])
        doc = _decode_document(block, start, length, base, ctx.path)
        try:
            if isinstance(doc, _Bad):
                raise doc
            pictures = _check_document(doc, ctx)
            rels = [r - base for r in _picture_offsets(buf, pictures, base + start, base + start + length, doc)]
        except _Bad as bad:
            errors.append((base + start, bad.product_id, bad.reason, bad.message))
            continue
        cat = doc["category_id"] if ctx.labelled else -1
        prod.append((row, doc["_id"], cat, len(pictures)))
        imgs.extend((row, i, rel, len(pic), hashlib.md5(pic).digest())
                    for i, (pic, rel) in enumerate(zip(pictures, rels)))
    p = np.array(prod, dtype=np.int64).reshape(-1, 4)
    i = np.array([r[:4] for r in imgs], dtype=np.int64).reshape(-1, 4)
    md5 = np.frombuffer(b"".join(r[4] for r in imgs), np.uint8).reshape(-1, 16)
    return _Rows(p[:, 0], p[:, 1], p[:, 2], p[:, 3], i[:, 0], i[:, 1], i[:, 2], i[:, 3], md5)


def _in_file_order(fast: _Rows, slow: _Rows) -> _Rows:
    """Both paths' rows, by document row then picture index."""
    if not len(slow.doc) and not len(slow.pic_doc):
        return fast
    cat = {f: np.concatenate([getattr(fast, f), getattr(slow, f)]) for f in _Rows.__dataclass_fields__}
    order = np.argsort(cat["doc"], kind="stable")
    pic_order = np.lexsort((cat["pic_idx"], cat["pic_doc"]))
    return _Rows(*(cat[f][order] for f in ("doc", "ids", "cats", "n_imgs")),
                 *(cat[f][pic_order] for f in ("pic_doc", "pic_idx", "pic_start", "pic_len")),
                 cat["md5"][pic_order])


_HEX = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8)


def _hex_strings(digests: np.ndarray) -> pa.Array:
    """The [n, 16] digests as n 32-character hex strings (``hexdigest``), built as one buffer."""
    n = len(digests)
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(_HEX[digests].tobytes()))


def _write_part(table: pa.Table, path: Path) -> None:
    """A worker's scratch table: Arrow IPC (no encoding), read back by :func:`_merge_parts`."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def decode_block(block: memoryview, base: int, ctx: BlockContext) -> BlockResult:
    """Index the documents of one block (runs in a worker process).

    Kept lean on purpose: at 58 GB this runs over 7 M documents, and MD5 (the stage's physical
    limit) should dominate it. Documents laid out as Kaggle's are read with array operations over
    the whole block (:func:`_fast_rows`); the rare others, and every bad record, take the general
    path (:func:`_slow_rows`), which gives exactly the results and errors this function always gave.
    """
    errors: list[tuple[int, int | None, str, str]] = []
    found = kaggle_spans(block)
    if found is None:
        span = np.array(frame(block, base, ctx.path)[0], dtype=np.int64).reshape(-1, 2)
    else:
        span = np.stack(found, axis=1)
    fast = _fast_rows(block, span[:, 0], span[:, 1], ctx)
    rest = np.ones(len(span), dtype=bool)
    rest[fast.doc] = False
    rows = _in_file_order(fast, _slow_rows(block, base, ctx, span, np.flatnonzero(rest), errors))
    errors.sort(key=lambda err: err[0])
    offsets = base + span[rows.doc, 0]
    n_imgs = rows.n_imgs.astype(np.int32)
    kind = "train" if ctx.labelled else "test"
    product_cols = {"_id": rows.ids, "category_id": rows.cats, "n_imgs": n_imgs, "offset": offsets,
                    "length": span[rows.doc, 1].astype(np.int32)}
    image_cols = {"_id": np.repeat(rows.ids, rows.n_imgs), "category_id": np.repeat(rows.cats, rows.n_imgs),
                  "img_idx": rows.pic_idx.astype(np.int32), "jpeg_offset": base + rows.pic_start,
                  "jpeg_length": rows.pic_len.astype(np.int32), "md5": _hex_strings(rows.md5)}
    prod = pa.table({k: product_cols[k] for k in PRODUCT_SCHEMA[kind].names}, schema=PRODUCT_SCHEMA[kind])
    parts = Path(ctx.parts_dir)
    _write_part(prod, parts / f"products-{base:016d}.arrow")
    _write_part(pa.table({k: image_cols[k] for k in IMAGE_SCHEMA[kind].names}, schema=IMAGE_SCHEMA[kind]),
                parts / f"images-{base:016d}.arrow")
    return BlockResult(base, rows.ids, n_imgs, errors, len(block))


@dataclass(frozen=True)
class DecodeConfig(Section):
    """The ``decode`` section of params.yaml."""

    SECTION = "decode"
    on_error: Literal["raise", "skip"]
    workers: int  # 0 = all cores
    block_size_mb: int

    def check(self) -> None:
        self.require("workers", self.workers >= 0, "0 (all cores) or a number of processes")
        self.require("block_size_mb", 16 <= self.block_size_mb <= 4096,
                     "16 to 4096 MB per worker task (a BSON document is up to 16 MiB; smaller blocks mean one "
                     "task per document, hours at real scale)")


@dataclass
class SplitStats:
    products: int = 0
    images: int = 0
    bytes: int = 0
    seconds: float = 0.0
    images_per_product: dict[int, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def decode_file(
    path: str | Path,
    products_out: Path,
    images_out: Path,
    skipped_out: Path,
    *,
    labelled: bool,
    category_ids: frozenset[int],
    on_error: str,
    workers: int | None,
    block_size: int,
    progress: bool = True,
) -> SplitStats:
    """Stream one BSON file into product / image / skipped tables (written to the given paths)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"decode.on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    kind = "train" if labelled else "test"
    stats = SplitStats()
    skipped: list[tuple[int, int | None, str, str]] = []
    blocks = _BlockLog()
    t0 = time.perf_counter()
    with scratch_dir(products_out.parent, "decode-parts") as parts:
        ctx = BlockContext(str(path), labelled, category_ids, parts)
        for res in map_blocks(path, decode_block, ctx, workers=workers, block_size=block_size, progress=progress):
            for off, pid, reason, message in res.errors:
                if on_error == "raise":
                    raise InputError(path, message, offset=off, product_id=pid)
                if not labelled:  # the submission needs a row for every test _id: never drop one silently
                    raise InputError(path, f"{message}; a test product cannot be skipped (Kaggle rejects a "
                                           "submission without it): repair or re-download this file",
                                     offset=off, product_id=pid)
                log.warning("skipped record: %s", InputError(path, message, offset=off, product_id=pid))
                skipped.append((off, pid, reason, message))
            blocks.add(res)
            stats.bytes += res.nbytes
        keep = None  # ids ascending through the file (the Kaggle files): no _id can repeat, nothing is held
        if not blocks.ascending:
            keep = _keep_first(Path(parts), blocks.bases, path, labelled, on_error, skipped)
        merged = (_merge_parts(Path(parts), blocks.bases, "images", IMAGE_SCHEMA[kind], images_out, keep),
                  _merge_parts(Path(parts), blocks.bases, "products", PRODUCT_SCHEMA[kind], products_out, keep))
        decoded = (sum(k * v for k, v in blocks.images_per_product.items()), blocks.rows)
        if merged != decoded:
            raise AssertionError(f"{path}: merged (pictures, products) {merged}, decoded {decoded}")
    pq.write_table(pa.table({
        "offset": [s[0] for s in skipped], "_id": [s[1] for s in skipped],
        "reason": [s[2] for s in skipped], "message": [s[3] for s in skipped]}, schema=SKIPPED_SCHEMA), skipped_out)
    per_count = blocks.images_per_product if keep is None else _images_per_product(Path(products_out))
    stats.products = sum(per_count.values())
    stats.images = sum(k * v for k, v in per_count.items())
    stats.images_per_product = dict(sorted(per_count.items()))
    for s in skipped:
        stats.skipped[s[2]] = stats.skipped.get(s[2], 0) + 1
    if not stats.products:
        raise _no_products(path, len(skipped))
    stats.seconds = time.perf_counter() - t0
    return stats


@dataclass
class _BlockLog:
    """What ``decode_file`` keeps of each block's products: a few numbers, not a row per product, so that
    memory stays flat over the 7 M products of the real train file."""

    bases: list[int] = field(default_factory=list)
    rows: int = 0
    ascending: bool = True  # every _id so far above every earlier one
    last: int | None = None
    images_per_product: dict[int, int] = field(default_factory=dict)

    def add(self, res: BlockResult) -> None:
        self.bases.append(res.base)
        self.rows += len(res.ids)
        if len(res.ids):
            self.ascending &= continues_ascending(res.ids, self.last)
            self.last = int(res.ids[-1])
        for k, v in zip(*np.unique(res.n_imgs, return_counts=True)):
            self.images_per_product[int(k)] = self.images_per_product.get(int(k), 0) + int(v)


def _read_parts(parts: Path, bases: list[int], name: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Columns of the workers' part files, concatenated in file order."""
    cols: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for base in bases:
        with pa.memory_map(str(parts / f"{name}-{base:016d}.arrow")) as source:
            table = pa.ipc.open_file(source).read_all()
        for c in columns:
            cols[c].append(table.column(c).to_numpy())
    return {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in cols.items()}


def _keep_first(parts: Path, bases: list[int], path: Path, labelled: bool, on_error: str,
                skipped: list[tuple[int, int | None, str, str]]) -> np.ndarray:
    """Rows kept where ``_id`` does not ascend through the file: the first of each repeated ``_id``
    (raising where a repeat may not be skipped). Reads the ids back from the part files: 8 bytes per
    product, only for files not ordered like Kaggle's."""
    cols = _read_parts(parts, bases, "products", ["_id", "offset"])
    ids, offsets = cols["_id"], cols["offset"]
    keep = np.ones(len(ids), dtype=bool)
    first: dict[int, int] = {}
    for row in _repeated_rows(ids):
        pid, off = int(ids[row]), int(offsets[row])
        if not first:
            first = {int(i): int(o) for i, o in zip(ids[::-1], offsets[::-1])}
        message = f"repeated _id (first seen at byte offset {first[pid]})"
        if not labelled:  # a submission needs each test product exactly once: never drop one
            raise InputError(path, f"repeated test _id {pid} (first seen at byte offset {first[pid]}): test "
                                   "products cannot be skipped", offset=off, product_id=pid)
        if on_error == "raise":
            raise InputError(path, message, offset=off, product_id=pid)
        log.warning("skipped record: %s", InputError(path, message, offset=off, product_id=pid))
        skipped.append((off, pid, "repeated_id", message))
        keep[row] = False
    return keep


def _images_per_product(products: Path) -> dict[int, int]:
    """Histogram of ``n_imgs`` over the written product table (read in batches)."""
    out: dict[int, int] = {}
    for batch in parquet_file(products).iter_batches(columns=["n_imgs"]):
        for k, v in zip(*np.unique(batch.column("n_imgs").to_numpy(), return_counts=True)):
            out[int(k)] = out.get(int(k), 0) + int(v)
    return out


def _no_products(path: Path, skipped: int = 0) -> InputError:
    """An empty split is an error: every later stage would fail on it, far from the cause."""
    why = " (empty file)" if path.stat().st_size == 0 else f" (all {skipped} records skipped)" if skipped else ""
    return InputError(path, f"no products{why}")


def _check_inputs(raw_dir: Path) -> None:
    """Fail before decoding anything (hours on the real files) on a missing or empty BSON of either split."""
    for split in SPLITS:
        src = raw_dir / f"{split}.bson"
        if not src.is_file():
            raise InputError(src, "file not found")
        if src.stat().st_size == 0:
            raise _no_products(src)


def _merge_parts(parts: Path, bases: list[int], name: str, schema: pa.Schema, out: Path,
                 keep: np.ndarray | None = None) -> int:
    """Concatenate the workers' part files in file order into one parquet, dropping the products not kept
    (``keep``: one flag per product, None = all; image parts are merged before the product parts, whose
    ``n_imgs`` then maps their rows to products). Returns the part rows read (pictures or products)."""
    rows = products = 0
    with pq.ParquetWriter(out, schema) as writer:
        for base in bases:
            part = parts / f"{name}-{base:016d}.arrow"
            with pa.memory_map(str(part)) as source:
                table = pa.ipc.open_file(source).read_all()
            mask = None
            if keep is not None and name == "products":
                mask = keep[products : products + table.num_rows]
                products += table.num_rows
            elif keep is not None:
                counts = _read_parts(parts, [base], "products", ["n_imgs"])["n_imgs"].astype(np.int64)
                mask = np.repeat(keep[products : products + len(counts)], counts)
                products += len(counts)
            rows += table.num_rows
            writer.write_table(table if mask is None or mask.all() else table.filter(pa.array(mask)))
            part.unlink()
    if keep is not None and products != len(keep):
        raise AssertionError(f"{out}: merged {products} products, expected {len(keep)}")
    return rows


def _repeated_rows(ids: np.ndarray) -> np.ndarray:
    """Rows whose ``_id`` already occurred earlier in file order (8 bytes per product of memory)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.zeros(len(ids), dtype=bool)
    dup[1:] = sorted_ids[1:] == sorted_ids[:-1]
    return np.sort(order[dup])


def run_decode(
    raw_dir: str | Path,
    out_dir: str | Path,
    metrics_dir: str | Path,
    cfg: DecodeConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Decode ``train.bson`` and ``test.bson`` of a Kaggle-format folder; returns the metrics."""
    raw_dir, out_dir, metrics_dir = Path(raw_dir), Path(out_dir), Path(metrics_dir)
    _check_inputs(raw_dir)
    taxonomy = load_taxonomy(raw_dir / "category_names.csv")
    category_ids = frozenset(taxonomy["category_id"].tolist())
    targets = {"taxonomy": out_dir / "taxonomy.parquet", "sources": out_dir / "sources.json"}
    for split in SPLITS:
        for table in ("products", "images", "skipped"):
            targets[f"{split}_{table}"] = out_dir / f"{split}_{table}.parquet"
    metrics: dict[str, Any] = {}
    with publish(targets) as tmp:
        taxonomy.to_parquet(tmp["taxonomy"], index=False)
        sources = {}
        for split in SPLITS:
            src = raw_dir / f"{split}.bson"
            stats = decode_file(
                src, tmp[f"{split}_products"], tmp[f"{split}_images"], tmp[f"{split}_skipped"],
                labelled=split == "train", category_ids=category_ids, on_error=cfg.on_error,
                workers=cfg.workers or None, block_size=cfg.block_size_mb * 1024 * 1024, progress=progress,
            )
            sources[split] = {"path": str(src), "size": src.stat().st_size}
            metrics[f"{split}_products"] = stats.products
            metrics[f"{split}_images"] = stats.images
            metrics[f"{split}_skipped_records"] = sum(stats.skipped.values())
            metrics[f"{split}_skipped_by_reason"] = stats.skipped
            metrics[f"{split}_images_per_product"] = {str(k): v for k, v in stats.images_per_product.items()}
            metrics[f"{split}_mb_per_s"] = round(stats.bytes / 1e6 / max(stats.seconds, 1e-9), 1)
            log.info("%s: %d products, %d images, %.1f MB/s, %d skipped", src, stats.products,
                     stats.images, metrics[f"{split}_mb_per_s"], metrics[f"{split}_skipped_records"])
        tmp["sources"].write_text(json.dumps(sources, indent=2) + "\n")
        counts = _category_counts(tmp["train_products"], taxonomy)
        metrics["categories"] = int(len(taxonomy))
        metrics["categories_present"] = int((counts["products"] > 0).sum())
        metrics_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(metrics_dir / "decode_categories.csv") as t:
            counts.to_csv(t, index=False)
        write_json(metrics_dir / "decode.json", metrics)
    return metrics


def _category_counts(products_path: Path, taxonomy: pd.DataFrame) -> pd.DataFrame:
    """Products and images per category, in taxonomy order (a DVC bar plot)."""
    prod = pd.read_parquet(products_path, columns=["category_id", "n_imgs"])
    agg = prod.groupby("category_id").agg(products=("n_imgs", "size"), images=("n_imgs", "sum"))
    out = taxonomy[["idx", "category_id", "level1", "level3"]].merge(agg, on="category_id", how="left")
    out[["products", "images"]] = out[["products", "images"]].fillna(0).astype("int64")
    return out
