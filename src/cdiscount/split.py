"""Stage ``split``: a product-level, per-category stratified train / validation split.

Deterministic per category (its own seeded generator), so adding data to one category never
reshuffles another. Categories too small to spare a validation product stay whole in train
and are listed in the metrics. An optional cap on training products per category
(reference report 000 capped at 300 images) marks the excess ``unused`` rather than
deleting it, so no product is lost.

Duplicate pictures across the split are kept on purpose: 42 % of real test products share a
picture with train, so a validation set scrubbed of such products would misjudge both the
models and the duplicate lookup. The metrics report how many validation products have an
exact picture match in the training fold.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import atomic_path, write_json
from .folds import FOLDS, fold_products
from .md5_keys import md5_keys
from .params import Section
from .parquet_file import parquet_file
from .sorted_ids import continues_ascending, find_sorted, isin_sorted
from .whole_table_writer import WholeTableWriter

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SplitConfig(Section):
    """The ``split`` section of params.yaml."""

    SECTION = "split"
    seed: int
    val_fraction: float
    cap_per_category: int  # max training products per category; 0 = no cap
    min_products_for_val: int  # categories smaller than this give nothing to validation

    def check(self) -> None:
        self.require("seed", self.seed >= 0, "an integer >= 0")
        self.require("val_fraction", 0 < self.val_fraction < 1, "a fraction strictly between 0 and 1")
        self.require("cap_per_category", self.cap_per_category >= 0, "0 (no cap) or a positive count")
        self.require("min_products_for_val", self.min_products_for_val >= 2,
                     ">= 2 (a category needs one training product besides its validation one)")


def _check(val_fraction: float, min_products_for_val: int) -> None:
    """The split params' bounds, checked before any product is read."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in [0, 1), got {val_fraction}")
    if min_products_for_val < 2:
        raise ValueError("split.min_products_for_val must be >= 2 (a category needs one product to train on)")


def _n_val(n: int, val_fraction: float, min_products_for_val: int) -> int:
    """Validation products of a category of ``n``: ``max(1, round(n * val_fraction))`` where the category
    has ``min_products_for_val``, never all of a category with more than one product."""
    n_val = max(1, int(round(n * val_fraction))) if n >= min_products_for_val and val_fraction > 0 else 0
    return min(n_val, n - 1) if n > 1 else n_val


def assign_folds(
    products: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float,
    cap_per_category: int,
    min_products_for_val: int,
) -> pd.DataFrame:
    """Return ``products`` (``_id``, ``category_id``) with a ``fold`` column.

    Each category with at least ``min_products_for_val`` products gives
    ``max(1, round(n * val_fraction))`` of them to validation; ``cap_per_category > 0`` keeps
    at most that many in train and marks the rest ``unused``.
    """
    _check(val_fraction, min_products_for_val)
    out = products[["_id", "category_id"]].sort_values("_id", kind="stable").reset_index(drop=True)
    fold = np.empty(len(out), dtype=object)
    for cid, rows in out.groupby("category_id", sort=True).indices.items():
        rng = np.random.default_rng([seed, int(cid)])
        rows = rows[rng.permutation(len(rows))]
        n = len(rows)
        n_val = _n_val(n, val_fraction, min_products_for_val)
        fold[rows[:n_val]] = "val"
        train = rows[n_val:]
        fold[train] = "train"
        if cap_per_category > 0:
            fold[train[cap_per_category:]] = "unused"
    out["fold"] = pd.Categorical(fold, categories=FOLDS)
    return out


def fold_tables(counts: np.ndarray, category_ids: np.ndarray, *, seed: int, val_fraction: float,
                cap_per_category: int, min_products_for_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Per category, the fold code (index into :data:`FOLDS`) of its products in ``_id`` order.

    Returns (codes, starts): category ``i``'s products take ``codes[starts[i] : starts[i] + counts[i]]``.
    The very draws of :func:`assign_folds` (one generator per category, seeded by ``[seed, category_id]``),
    so both give every product the same fold; this one needs a byte per product instead of the whole
    product table.
    """
    codes = np.empty(int(counts.sum()), dtype=np.int8)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    for i, (cid, n) in enumerate(zip(category_ids.tolist(), counts.tolist())):
        perm = np.random.default_rng([seed, int(cid)]).permutation(n)  # rank r -> position perm[r]
        n_val = _n_val(n, val_fraction, min_products_for_val)
        mine = codes[starts[i] : starts[i] + n]
        mine[perm[:n_val]] = FOLDS.index("val")
        mine[perm[n_val:]] = FOLDS.index("train")
        if cap_per_category > 0:
            mine[perm[n_val + cap_per_category :]] = FOLDS.index("unused")
    return codes, starts


def _positions(dense: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Position of each row within its category, counting ``seen`` earlier rows per category (updated)."""
    order = np.argsort(dense, kind="stable")
    d = dense[order]
    first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    within = np.arange(len(d)) - np.repeat(first, np.diff(np.r_[first, len(d)]))
    pos = np.empty(len(d), dtype=np.int64)
    pos[order] = seen[d] + within
    seen += np.bincount(d, minlength=len(seen))
    return pos


def _scan(products: pq.ParquetFile, batch_rows: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Categories, their product counts, and whether ``_id`` ascends through the file (one pass)."""
    counts: dict[int, int] = {}
    last, ascending = None, True
    for batch in products.iter_batches(batch_size=batch_rows, columns=["_id", "category_id"]):
        ids = batch.column("_id").to_numpy()
        if len(ids):
            ascending &= continues_ascending(ids, last)
            last = ids[-1]
        cats, n = np.unique(batch.column("category_id").to_numpy(), return_counts=True)
        for c, k in zip(cats.tolist(), n.tolist()):
            counts[c] = counts.get(c, 0) + k
    cats = np.array(sorted(counts), dtype=np.int64)
    return cats, np.array([counts[c] for c in cats.tolist()], dtype=np.int64), ascending


def stream_folds(products_path: str | Path, out_path: Path, *, seed: int, val_fraction: float,
                 cap_per_category: int, min_products_for_val: int, batch_rows: int = 1 << 18
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write what :func:`assign_folds` returns, byte for byte, reading ``products_path`` in batches.

    Memory: a byte per product (the fold codes) plus one batch, against the whole product table sorted
    in pandas (2.5 GB for the real 7 M products, measured). Needs the products in ascending ``_id``
    order, as ``decode`` writes the Kaggle files; any other order is sorted in memory instead (logged).
    Returns (category ids, counts, fold codes, code starts) for the metrics.
    """
    _check(val_fraction, min_products_for_val)
    f = parquet_file(products_path)
    cats, counts, ascending = _scan(f, batch_rows)
    kw = {"seed": seed, "val_fraction": val_fraction, "cap_per_category": cap_per_category,
          "min_products_for_val": min_products_for_val}
    codes, starts = fold_tables(counts, cats, **kw)
    writer = WholeTableWriter(out_path)
    if not ascending:
        log.warning("%s: _id does not ascend through the file; the split sorts it in memory", products_path)
        whole = assign_folds(pd.read_parquet(products_path, columns=["_id", "category_id"]), **kw)
        writer.write(pa.Table.from_pandas(whole, preserve_index=False))
    else:
        seen = np.zeros(len(cats), dtype=np.int64)
        for batch in f.iter_batches(batch_size=batch_rows, columns=["_id", "category_id"]):
            cat = batch.column("category_id").to_numpy()
            dense = np.searchsorted(cats, cat)
            fold = codes[starts[dense] + _positions(dense, seen)]
            frame = pd.DataFrame({"_id": batch.column("_id").to_numpy(), "category_id": cat,
                                  "fold": pd.Categorical.from_codes(fold, categories=FOLDS)})
            writer.write(pa.Table.from_pandas(frame, preserve_index=False))
    writer.close()
    return cats, counts, codes, starts


def run_split(products_path: str | Path, duplicates: str | Path, out_path: str | Path, metrics_path: str | Path,
              cfg: SplitConfig) -> dict[str, Any]:
    """Write ``split.parquet`` (``_id``, ``category_id``, ``fold``) and the split metrics (streamed)."""
    with atomic_path(out_path) as tmp:
        cats, counts, codes, starts = stream_folds(
            products_path, Path(tmp), seed=cfg.seed, val_fraction=cfg.val_fraction,
            cap_per_category=cfg.cap_per_category, min_products_for_val=cfg.min_products_for_val)
    per_fold = np.bincount(codes, minlength=len(FOLDS))
    val_per_cat = np.add.reduceat(codes == FOLDS.index("val"), starts, dtype=np.int64) if len(codes) else codes
    metrics = {
        "train_products": int(per_fold[FOLDS.index("train")]),
        "val_products": int(per_fold[FOLDS.index("val")]),
        "unused_products": int(per_fold[FOLDS.index("unused")]),
        "categories": int(len(cats)),
        "categories_without_val": int((val_per_cat == 0).sum()),
        "val_products_with_train_match": val_matches(Path(out_path), Path(duplicates)),
    }
    write_json(metrics_path, metrics)
    log.info("split: %s", metrics)
    return metrics


def _fold_ids(split_path: Path, fold: str, batch_rows: int) -> np.ndarray:
    """Sorted ``_id`` of one fold (8 bytes per product of that fold)."""
    return np.sort(fold_products(split_path, fold, ("_id",), batch_rows)["_id"].to_numpy())


def val_matches(split_path: Path, duplicates: Path, batch_rows: int = 1 << 18) -> int:
    """Validation products with a picture identical to one of a training-fold product.

    Two passes over the duplicates table, holding the validation rows' distinct hashes (16 bytes each,
    sorted once) and the ``_id`` of the validation and unused folds, not the table itself; each batch of
    training hashes is looked up in them by binary search (``np.isin`` per batch re-sorted every
    validation hash: temporaries of ~100 bytes per validation picture, each batch).
    """
    val_ids, unused_ids = _fold_ids(split_path, "val", batch_rows), _fold_ids(split_path, "unused", batch_rows)
    dup = parquet_file(duplicates)

    def train_rows() -> Any:
        for b in dup.iter_batches(batch_size=batch_rows, columns=["split", "_id", "md5"]):
            keep = pc.equal(b.column("split"), "train")
            ids = b.column("_id").filter(keep).to_numpy()
            yield ids, b.column("md5").filter(keep)

    vk, vid = [], []
    for ids, md5 in train_rows():
        v = isin_sorted(ids, val_ids)
        vk.append(md5_keys(md5.filter(pa.array(v))))
        vid.append(ids[v])
    if not vk:
        return 0
    val_keys, key_of = np.unique(np.concatenate(vk), return_inverse=True)  # key_of: each row's distinct hash
    id_of = np.concatenate(vid)
    del vk, vid
    hit = np.zeros(len(val_keys), dtype=bool)
    for ids, md5 in train_rows():
        t = ~isin_sorted(ids, val_ids) & ~isin_sorted(ids, unused_ids)
        at, found = find_sorted(md5_keys(md5.filter(pa.array(t))), val_keys)
        hit[at[found]] = True
    return int(len(np.unique(id_of[hit[key_of]])))
