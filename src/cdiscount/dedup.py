"""Stage ``dedup``: exact duplicate pictures (by MD5) across train and test.

On the real data 12.4 M train pictures hold only 7.8 M distinct images, placeholders are
shared by thousands of products of unrelated categories, and 42 % of test products have a
picture that also appears in train. This stage measures all of that and writes the lookup
the ensemble uses (hash -> category votes) without ever holding all hashes in memory:
rows are first partitioned by hash prefix into files of about ``bucket_rows`` rows, then each bucket is
aggregated on its own (array operations, no per-hash Python), its duplicated pictures checked
for blanks by a pool of processes, and its rows of every output table written before the next
bucket is read.
"""
from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from .atomic import publish, scratch_dir, write_json
from .bson_io import source_bson
from .errors import InputError, WorkerLost
from .md5_keys import hex_digits
from .params import Section
from .parquet_file import parquet_file
from .partitioned_parquet import marked
from .sorted_ids import find_sorted
from .whole_table_writer import WholeTableWriter

log = logging.getLogger(__name__)

HASH_SCHEMA = pa.schema([
    ("md5", pa.string()), ("n_train", pa.int64()), ("n_test", pa.int64()), ("n_categories", pa.int64()),
    ("top_category", pa.int64()), ("top_votes", pa.int64()), ("is_placeholder", pa.bool_()),
    ("first_split", pa.string()), ("first_id", pa.int64()), ("first_img_idx", pa.int32()),
])
VOTE_SCHEMA = pa.schema([("md5", pa.string()), ("category_id", pa.int64()), ("votes", pa.int64())])
DUP_SCHEMA = pa.schema([("split", pa.string()), ("_id", pa.int64()), ("img_idx", pa.int32()),
                        ("category_id", pa.int64()), ("md5", pa.string())])
#: The bucket files also carry where each picture is, for the blank check (not written to any output).
BUCKET_SCHEMA = pa.schema([*DUP_SCHEMA, ("jpeg_offset", pa.int64()), ("jpeg_length", pa.int32())])
SPLITS = ("train", "test")
#: The most hash partitions (the first four hex digits of a hash pick its partition).
MAX_BUCKETS = 1 << 16

#: Duplicated pictures per blank-check task of a worker.
BLANK_CHUNK = 2000


@dataclass(frozen=True)
class DedupConfig(Section):
    """The ``dedup`` section of params.yaml."""

    SECTION = "dedup"
    bucket_rows: int  # picture rows per hash partition, on average at most: a partition's memory
    placeholder_min_categories: int  # a picture in this many categories is a placeholder
    blank_std: float  # grey-level std below which a duplicated picture counts as blank
    workers: int  # processes decoding pictures for the blank check; 0 = all cores, 1 = this process

    def check(self) -> None:
        self.require("bucket_rows", self.bucket_rows >= 1,
                     ">= 1 picture rows per hash partition (memory per partition; 100000: about 0.1 GB)")
        self.require("placeholder_min_categories", self.placeholder_min_categories >= 2,
                     ">= 2 (a picture shared by this many categories says nothing about any of them)")
        self.require("blank_std", self.blank_std >= 0, ">= 0 (0 = no blank check)")
        self.require("workers", self.workers >= 0, "0 (all cores) or a number of processes (1 = no pool)")


def _buckets_of(md5: pa.Array, buckets: int) -> np.ndarray:
    """Bucket of each hash: its first 4 hex digits modulo ``buckets`` (read from the string buffer at once)."""
    digits = hex_digits(md5, 4)
    if digits is not None:
        return (digits.astype(np.int64) @ np.array([4096, 256, 16, 1])) % buckets
    prefix_to_bucket = {f"{i:04x}": i % buckets for i in range(1 << 16)}  # anything else: the general way
    return md5.to_pandas().str.slice(0, 4).map(prefix_to_bucket).to_numpy().astype(np.int64)


def _constant_strings(value: str, n: int) -> pa.Array:
    """``n`` times the same string, built as one buffer."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


def _partition(interim: Path, parts: Path, buckets: int, batch_rows: int) -> list[Path]:
    """Stream both image tables into ``buckets`` files keyed by the hash's first bytes (file order kept
    within each bucket: train first, then test)."""
    paths = [parts / f"bucket-{b:04d}.parquet" for b in range(buckets)]
    writers = [pq.ParquetWriter(p, BUCKET_SCHEMA) for p in paths]
    try:
        for split in SPLITS:
            f = parquet_file(interim / f"{split}_images.parquet")
            cols = ["_id", "img_idx", "md5", "jpeg_offset", "jpeg_length"] + (["category_id"] if split == "train" else [])
            for batch in f.iter_batches(batch_size=batch_rows, columns=cols):
                n = batch.num_rows
                cat = batch.column("category_id") if split == "train" else pa.nulls(n, pa.int64())
                table = pa.table({"split": _constant_strings(split, n), "_id": batch.column("_id"),
                                  "img_idx": batch.column("img_idx"), "category_id": cat, "md5": batch.column("md5"),
                                  "jpeg_offset": batch.column("jpeg_offset"),
                                  "jpeg_length": batch.column("jpeg_length")}, schema=BUCKET_SCHEMA)
                bucket = _buckets_of(batch.column("md5"), buckets)
                order = np.argsort(bucket, kind="stable")
                table = table.take(pa.array(order))
                bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))])
                for b in np.flatnonzero(np.diff(bounds)):
                    writers[b].write_table(table.slice(bounds[b], bounds[b + 1] - bounds[b]))
    finally:
        for w in writers:
            w.close()
    return paths


def _aggregate(rows: pd.DataFrame, placeholder_min_categories: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-hash counts, per-hash category votes and the duplicated rows of one bucket.

    The hashes frame also holds the first row's ``jpeg_offset`` / ``jpeg_length`` (for the blank check).
    """
    size = rows.groupby("md5", sort=False)["split"].transform("size")
    dup = rows[size > 1]
    if dup.empty:
        return (pd.DataFrame(columns=HASH_SCHEMA.names), pd.DataFrame(columns=VOTE_SCHEMA.names),
                dup[DUP_SCHEMA.names])
    g = dup.groupby("md5", sort=True)
    n_train = (dup["split"] == "train").groupby(dup["md5"], sort=True).sum().astype("int64")
    hashes = pd.DataFrame({
        "n_train": n_train,
        "n_test": g.size().astype("int64") - n_train,
        "n_categories": g["category_id"].nunique(),
    })
    first = g.head(1).set_index("md5")
    for col, src in (("first_split", "split"), ("first_id", "_id"), ("first_img_idx", "img_idx"),
                     ("jpeg_offset", "jpeg_offset"), ("jpeg_length", "jpeg_length")):
        hashes[col] = first[src]
    train = dup[dup["split"] == "train"]
    votes = (train.groupby(["md5", "category_id"]).size().rename("votes").reset_index()
             .astype({"category_id": "int64", "votes": "int64"}))
    top = votes.sort_values(["md5", "votes", "category_id"], ascending=[True, False, True]).drop_duplicates("md5")
    hashes = hashes.join(top.set_index("md5").rename(columns={"category_id": "top_category", "votes": "top_votes"}))
    hashes[["top_category", "top_votes"]] = hashes[["top_category", "top_votes"]].fillna(0).astype("int64")
    hashes["is_placeholder"] = hashes["n_categories"] >= placeholder_min_categories
    return (hashes.reset_index()[HASH_SCHEMA.names + ["jpeg_offset", "jpeg_length"]], votes[VOTE_SCHEMA.names],
            dup[DUP_SCHEMA.names])


def image_std(jpeg: bytes) -> float:
    """Grey-level standard deviation of a picture, decoded at 1/8 scale (fast: JPEG DCT scaling)."""
    img = Image.open(io.BytesIO(jpeg))
    img.draft("L", (img.width // 8, img.height // 8))
    return float(np.asarray(img.convert("L"), dtype=np.float32).std())


def _blank_chunk(task: tuple[str, np.ndarray, np.ndarray, np.ndarray, float]) -> np.ndarray:
    """Blank flags of pictures of one BSON file, read by offset (one ``pread`` each, in file order)."""
    path, offsets, lengths, ids, blank_std = task
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = np.zeros(len(offsets), dtype=bool)
        for i, (off, n) in enumerate(zip(offsets.tolist(), lengths.tolist())):
            data = os.pread(fd, n, off)
            if len(data) != n:
                raise InputError(path, "file shorter than its image index (changed since decode?)", offset=off,
                                 product_id=int(ids[i]))
            flags[i] = image_std(data) < blank_std
        return flags
    finally:
        os.close(fd)


class _BlankCheck:
    """Near-blank (low variance) check of duplicated pictures, each read once, spread over processes.

    A worker that dies (OOM killer, ``kill -9``) raises :class:`~cdiscount.errors.WorkerLost` instead
    of hanging the stage (``concurrent.futures`` notices the death).
    """

    def __init__(self, interim: Path, blank_std: float, workers: int) -> None:
        self.interim, self.blank_std = interim, blank_std
        self.paths = {split: str(source_bson(interim, split)) for split in SPLITS}
        workers = workers or os.cpu_count() or 1
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) if workers > 1 else None
        if self.pool is not None:
            # Fork the workers now, before any picture row is read. Forked at the first bucket's check,
            # each kept a copy-on-write image of the parent's heap as it was then (the partition pass, the
            # bucket's frames), which turned private as the parent went on: PSS that grew with the data.
            self.pool.submit(int).result()

    def __call__(self, hashes: pd.DataFrame) -> np.ndarray:
        flags = np.zeros(len(hashes), dtype=bool)
        split = hashes["first_split"].to_numpy()
        offsets, lengths = hashes["jpeg_offset"].to_numpy(), hashes["jpeg_length"].to_numpy()
        ids = hashes["first_id"].to_numpy()
        tasks, where = [], []
        for s in SPLITS:
            rows = np.flatnonzero(split == s)
            rows = rows[np.argsort(offsets[rows], kind="stable")]  # read each file forwards
            for chunk in np.array_split(rows, -(-len(rows) // BLANK_CHUNK)) if len(rows) else []:
                tasks.append((self.paths[s], offsets[chunk], lengths[chunk], ids[chunk], self.blank_std))
                where.append(chunk)
        if self.pool is None:
            results = map(_blank_chunk, tasks)
        else:
            results = self.pool.map(_blank_chunk, tasks)
        try:
            for chunk, got in zip(where, results):
                flags[chunk] = got
        except BrokenProcessPool:  # a killed worker: say so, rather than the pool's bare message
            raise WorkerLost(f"{self.interim}: blank check of duplicated pictures", "lower dedup.workers") from None
        return flags

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def partitions(interim: Path, bucket_rows: int) -> int:
    """Hash partitions of at most ``bucket_rows`` picture rows on average (at most :data:`MAX_BUCKETS`).

    Why rows, not a partition count: a partition's memory is its rows, so memory stays what
    ``bucket_rows`` says at every data size. A fixed count (the former ``dedup.buckets: 16``, raised
    to 100 k rows each) gave small partitions on small data and full ones from 1.6 M rows on:
    peak PSS grew 0.25 -> 0.40 GB from F = 0.01 to 0.1 of the real size (issue 11)."""
    rows = sum(parquet_file(interim / f"{s}_images.parquet").metadata.num_rows for s in SPLITS)
    return min(max(1, -(-rows // bucket_rows)), MAX_BUCKETS)


def _as_read_back(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """``frame`` with the dtypes it would have after a parquet round trip through ``schema``."""
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_pandas()


def run_dedup(
    interim_dir: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path,
    cfg: DedupConfig,
    *,
    batch_rows: int = 1 << 18,
    progress: bool = True,
) -> dict[str, Any]:
    """Find duplicate pictures; write ``hashes``, ``votes``, ``duplicates`` and ``test_matches`` tables.

    Memory is bounded by one bucket (plus one row group of the outputs), whatever the number of pictures.
    """
    interim, out = Path(interim_dir), Path(out_dir)
    targets = {name: out / f"{name}.parquet" for name in ("hashes", "votes", "duplicates", "test_matches")}
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"hashes": 0, "dup_rows": 0, "placeholder": 0, "within_category": 0, "blank": 0, "test_matches": 0}
    matched_ids: list[np.ndarray] = []
    blank = _BlankCheck(interim, cfg.blank_std, cfg.workers)
    try:
        with scratch_dir(out.parent, "dedup-buckets") as parts, publish(targets) as tmp:
            bucket_paths = _partition(interim, Path(parts), partitions(interim, cfg.bucket_rows), batch_rows)
            hw, mw = WholeTableWriter(tmp["hashes"]), WholeTableWriter(tmp["test_matches"])
            dup_schema = marked(DUP_SCHEMA)  # a row group per hash partition
            with pq.ParquetWriter(tmp["votes"], VOTE_SCHEMA) as vw, pq.ParquetWriter(tmp["duplicates"], dup_schema) as dw:
                for p in tqdm(bucket_paths, desc="dedup buckets", disable=not progress):
                    hashes, votes, dup = _aggregate(pd.read_parquet(p), cfg.placeholder_min_categories)
                    p.unlink()
                    vw.write_table(pa.Table.from_pandas(votes, schema=VOTE_SCHEMA, preserve_index=False))
                    dw.write_table(pa.Table.from_pandas(dup, schema=DUP_SCHEMA, preserve_index=False),
                                   row_group_size=max(len(dup), 1))  # one row group: this partition's hashes
                    where = hashes[["jpeg_offset", "jpeg_length"]] if "jpeg_offset" in hashes else None
                    hashes = _as_read_back(hashes[HASH_SCHEMA.names], HASH_SCHEMA)
                    if where is not None:
                        hashes[["jpeg_offset", "jpeg_length"]] = where.to_numpy()
                        hashes["is_blank"] = blank(hashes)
                        hashes = hashes.drop(columns=["jpeg_offset", "jpeg_length"])
                    else:
                        hashes["is_blank"] = np.zeros(0, dtype=bool)
                    hw.write(pa.Table.from_pandas(hashes, preserve_index=False))
                    matches = _test_matches(_as_read_back(dup, DUP_SCHEMA), hashes)
                    mw.write(pa.Table.from_pandas(matches, preserve_index=False))
                    matched_ids.append(matches["_id"].to_numpy())
                    counts["hashes"] += len(hashes)
                    counts["dup_rows"] += len(dup)
                    counts["placeholder"] += int(hashes["is_placeholder"].sum())
                    counts["within_category"] += int(((hashes["n_categories"] == 1) & (hashes["n_train"] > 1)).sum())
                    counts["blank"] += int(hashes["is_blank"].sum())
                    counts["test_matches"] += len(matches)
            hw.close()
            mw.close()
            n_images = sum(parquet_file(interim / f"{s}_images.parquet").metadata.num_rows for s in SPLITS)
            metrics = {
                "images": n_images,
                "distinct_images": n_images - counts["dup_rows"] + counts["hashes"],
                "duplicate_images": counts["dup_rows"] - counts["hashes"],  # copies beyond the first of each hash
                "duplicated_hashes": counts["hashes"],
                "placeholder_hashes": counts["placeholder"],
                "within_category_hashes": counts["within_category"],
                "blank_hashes": counts["blank"],
                "test_images_with_train_match": counts["test_matches"],
                **_product_matches(interim, np.concatenate(matched_ids) if matched_ids else np.zeros(0, np.int64)),
            }
            write_json(metrics_path, metrics)
    finally:
        blank.close()
    log.info("dedup: %s", metrics)
    return metrics


def _test_matches(dup: pd.DataFrame, hashes: pd.DataFrame) -> pd.DataFrame:
    """Test pictures of one bucket whose hash also occurs in train."""
    in_train = hashes.loc[hashes["n_train"] > 0, ["md5", "is_placeholder", "is_blank"]]
    return dup.loc[dup["split"] == "test", ["split", "_id", "img_idx", "md5"]].drop(columns="split").merge(
        in_train, on="md5")


def _product_matches(interim: Path, matched_ids: np.ndarray, batch_rows: int = 1 << 18) -> dict[str, int]:
    """Product-level match counts from the ``_id`` of every matched test picture (test products read in
    batches; the matched ids are a few bytes per matched picture)."""
    ids, per_id = np.unique(matched_ids, return_counts=True)
    matched = fully = 0
    f = parquet_file(interim / "test_products.parquet")
    for batch in f.iter_batches(batch_size=batch_rows, columns=["_id", "n_imgs"]):
        pid = batch.column("_id").to_numpy()
        at, found = find_sorted(pid, ids)
        n = np.zeros(len(pid), np.int64)
        n[found] = per_id[at[found]]
        matched += int((n > 0).sum())
        fully += int((n >= batch.column("n_imgs").to_numpy()).sum())
    return {"test_products_with_train_match": matched, "test_products_fully_matched": fully}
