"""Duplicate-picture lookup: training labels of the exact (MD5) copies of a product's pictures.

On the real data 42 % of test products share a picture with a training product; the top Kaggle
teams gained 0.3 to 0.5 points by trusting those labels. A vote is only trusted when it is
*unambiguous*: every matching non-placeholder picture points at one category. Placeholders are
hashes seen in several categories of the reference set, or near-blank pictures (``dedup``).

For validation the same lookup is simulated with the training fold as the only reference, so
the measured gain is what the test set can expect.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import scratch_dir
from .components import Component
from .md5_keys import hex_digits
from .parquet_file import parquet_file
from .partitioned_parquet import is_hash_partitioned
from .sorted_ids import isin_sorted


@dataclass(frozen=True)
class Votes:
    """Per query product, its votes (``_id``, ``category_id``, ``votes``) and the unambiguous label."""

    table: pd.DataFrame
    label: pd.Series  # _id -> category_id, unambiguous products only


def product_votes(query: pd.DataFrame, reference: pd.DataFrame, *, placeholder_min_categories: int,
                  blank_md5: set[str] | frozenset[str], min_votes: int) -> Votes:
    """Votes of ``query`` pictures (``_id``, ``md5``) from ``reference`` ones (``md5``, ``category_id``)."""
    return votes_of(hash_hits(query, reference, placeholder_min_categories=placeholder_min_categories,
                              blank_md5=blank_md5), min_votes)


def vote_width(votes: Votes, ids: np.ndarray) -> int:
    """The K of :func:`vote_component` for all of ``ids`` at once."""
    t = votes.table[votes.table["_id"].isin(ids)]
    return max(int(t.groupby("_id").size().max()) if len(t) else 1, 1)


def hash_hits(query: pd.DataFrame, reference: pd.DataFrame, *, placeholder_min_categories: int,
              blank_md5: set[str] | frozenset[str]) -> pd.DataFrame:
    """Per (query ``_id``, ``category_id``) the reference pictures sharing a hash with it (``votes``),
    sorted. Every step is per hash, so hash partitions of both tables give the same rows (summed)."""
    ref = reference[~reference["md5"].isin(blank_md5)]
    n_cat = ref.groupby("md5")["category_id"].nunique()
    ref = ref[ref["md5"].map(n_cat) < placeholder_min_categories]
    per_hash = ref.groupby(["md5", "category_id"]).size().rename("n").reset_index()
    hits = query[["_id", "md5"]].merge(per_hash, on="md5")
    return (hits.groupby(["_id", "category_id"])["n"].sum().rename("votes").reset_index()
            .astype({"_id": "int64", "category_id": "int64", "votes": "int64"}))


def votes_of(table: pd.DataFrame, min_votes: int) -> Votes:
    """:class:`Votes` from the per (``_id``, ``category_id``) vote table."""
    per_product = table.groupby("_id").agg(categories=("category_id", "size"), votes=("votes", "sum"),
                                           category_id=("category_id", "first"))
    sure = per_product[(per_product["categories"] == 1) & (per_product["votes"] >= min_votes)]
    return Votes(table, sure["category_id"])


#: Duplicate-table rows per hash partition of :func:`votes_from_dedup`, at most on average.
PARTITION_ROWS = 100_000


def votes_from_dedup(dedup: Path, val_ids: np.ndarray, *, placeholder_min_categories: int, min_votes: int,
                     batch_rows: int = 1 << 18) -> dict[str, Votes]:
    """Validation votes from the training fold only, test votes from every training product, computed
    over hash partitions of ``dedup``'s duplicates table: its row groups as dedup writes them (one per
    partition: no second partitioning pass over the duplicates), or partitions made here for a table
    written otherwise.

    The same :class:`Votes` as :func:`product_votes` on the whole tables (per partition
    :func:`hash_hits`, summed), holding one partition at a time instead of every duplicated picture
    with its hash as a Python string (GBs at the real 12 M pictures). Memory: a partition, the vote
    rows (a few per matched product) and the validation ``_id`` (8 bytes each).
    """
    val_ids = np.sort(np.asarray(val_ids, dtype=np.int64))
    blank = _blank_md5(dedup / "hashes.parquet", batch_rows)
    kw = {"placeholder_min_categories": placeholder_min_categories, "blank_md5": blank}
    hits: dict[str, list[pd.DataFrame]] = {"val": [], "test": []}
    for rows in _hash_partitions(dedup, batch_rows):
        train = rows[rows["split"] == "train"]
        in_val = isin_sorted(train["_id"].to_numpy(), val_ids)
        hits["val"].append(hash_hits(train[in_val], train[~in_val], **kw))
        hits["test"].append(hash_hits(rows[rows["split"] == "test"], train, **kw))
    return {k: votes_of(_summed(v), min_votes) for k, v in hits.items()}


def _hash_partitions(dedup: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    """``duplicates.parquet`` as frames that each hold every row of their hashes: its row groups where
    dedup wrote one per hash partition (its schema says so), else partitions written to scratch files."""
    source = parquet_file(dedup / "duplicates.parquet")
    cols = ["split", "_id", "md5", "category_id"]
    if is_hash_partitioned(source):
        for g in range(source.num_row_groups):
            yield source.read_row_group(g, columns=cols).to_pandas()
        return
    parts = max(1, -(-source.metadata.num_rows // PARTITION_ROWS))
    with scratch_dir(dedup.parent, "votes") as tmp:
        paths = [Path(tmp) / f"part-{p:05d}.parquet" for p in range(parts)]
        writers: list[pq.ParquetWriter | None] = [None] * parts
        try:
            for batch in source.iter_batches(batch_size=batch_rows, columns=cols):
                table = pa.Table.from_batches([batch])
                part = _partition_of(table.column("md5"), parts)
                for p in np.unique(part).tolist():
                    if writers[p] is None:
                        writers[p] = pq.ParquetWriter(paths[p], table.schema)
                    writers[p].write_table(table.filter(pa.array(part == p)))
        finally:
            for w in writers:
                if w is not None:
                    w.close()
        for p, path in enumerate(paths):
            if writers[p] is not None:
                rows = pd.read_parquet(path)
                path.unlink()
                yield rows


def _summed(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The partitions' vote rows as :func:`hash_hits` of the whole tables gives them (summed, sorted)."""
    if not parts:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in ("_id", "category_id", "votes")})
    table = pd.concat(parts, ignore_index=True)
    return (table.groupby(["_id", "category_id"])["votes"].sum().reset_index()
            .astype({"_id": "int64", "category_id": "int64", "votes": "int64"}))


def _partition_of(md5: pa.ChunkedArray, parts: int) -> np.ndarray:
    """Partition of each hash: its leading hex digits (any other string: its pandas hash)."""
    digits = hex_digits(md5, 8)
    if digits is not None:
        return (digits.astype(np.int64) @ (16 ** np.arange(7, -1, -1, dtype=np.int64))) % parts
    return (pd.util.hash_array(md5.to_numpy(zero_copy_only=False).astype(object)) % np.uint64(parts)).astype(np.int64)


def _blank_md5(hashes: Path, batch_rows: int) -> frozenset[str]:
    """Hashes of near-blank pictures (few), read without loading the hash table."""
    out: set[str] = set()
    for b in parquet_file(hashes).iter_batches(batch_size=batch_rows, columns=["md5", "is_blank"]):
        out.update(b.column("md5").filter(b.column("is_blank")).to_pylist())
    return frozenset(out)


def vote_component(votes: Votes, ids: np.ndarray, idx_of: pd.Series, smoothing: float,
                   width: int | None = None) -> Component:
    """The votes as one more ensemble component: share of votes, smoothed; no match = uniform.

    ``width``: the rows' K at least (:func:`vote_width` of a whole fold, so that its chunks are the
    whole fold's rows: the fit's log-loss counts every candidate slot)."""
    t = votes.table[votes.table["_id"].isin(ids)]
    k = max(int(t.groupby("_id").size().max()) if len(t) else 1, 1, width or 1)
    row_of = pd.Index(ids).get_indexer(t["_id"])
    idx = np.full((len(ids), k), -1, dtype=np.int64)
    prob = np.zeros((len(ids), k), dtype=np.float32)
    total = t.groupby("_id")["votes"].transform("sum").to_numpy()
    slot = t.groupby("_id").cumcount().to_numpy()
    idx[row_of, slot] = t["category_id"].map(idx_of).to_numpy()
    prob[row_of, slot] = (1 - smoothing) * t["votes"].to_numpy() / total
    return Component("dedup_vote", idx, prob)
