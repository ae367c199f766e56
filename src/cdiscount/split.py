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

from .atomic import atomic_path, write_json
from .params import Section

log = logging.getLogger(__name__)

FOLDS = ("train", "val", "unused")


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
    if not 0 <= val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in [0, 1), got {val_fraction}")
    if min_products_for_val < 2:
        raise ValueError("split.min_products_for_val must be >= 2 (a category needs one product to train on)")
    out = products[["_id", "category_id"]].sort_values("_id", kind="stable").reset_index(drop=True)
    fold = np.empty(len(out), dtype=object)
    for cid, rows in out.groupby("category_id", sort=True).indices.items():
        rng = np.random.default_rng([seed, int(cid)])
        rows = rows[rng.permutation(len(rows))]
        n = len(rows)
        n_val = max(1, int(round(n * val_fraction))) if n >= min_products_for_val and val_fraction > 0 else 0
        n_val = min(n_val, n - 1) if n > 1 else n_val
        fold[rows[:n_val]] = "val"
        train = rows[n_val:]
        fold[train] = "train"
        if cap_per_category > 0:
            fold[train[cap_per_category:]] = "unused"
    out["fold"] = pd.Categorical(fold, categories=FOLDS)
    return out


def run_split(products_path: str | Path, duplicates: str | Path, out_path: str | Path, metrics_path: str | Path,
              cfg: SplitConfig) -> dict[str, Any]:
    """Write ``split.parquet`` (``_id``, ``category_id``, ``fold``) and the split metrics."""
    products = pd.read_parquet(products_path, columns=["_id", "category_id"])
    split = assign_folds(products, seed=cfg.seed, val_fraction=cfg.val_fraction, cap_per_category=cfg.cap_per_category,
                         min_products_for_val=cfg.min_products_for_val)
    with atomic_path(out_path) as tmp:
        split.to_parquet(tmp, index=False)
    counts = split["fold"].value_counts()
    per_cat = split.groupby("category_id", observed=True)["fold"].apply(lambda f: (f == "val").sum())
    metrics = {
        "train_products": int(counts.get("train", 0)),
        "val_products": int(counts.get("val", 0)),
        "unused_products": int(counts.get("unused", 0)),
        "categories": int(split["category_id"].nunique()),
        "categories_without_val": int((per_cat == 0).sum()),
        "val_products_with_train_match": _val_matches(split, Path(duplicates)),
    }
    write_json(metrics_path, metrics)
    log.info("split: %s", metrics)
    return metrics


def _val_matches(split: pd.DataFrame, duplicates: Path) -> int:
    """Validation products with a picture identical to one of a training-fold product."""
    dup = pd.read_parquet(duplicates, columns=["split", "_id", "md5"])
    dup = dup[dup["split"] == "train"].merge(split[["_id", "fold"]], on="_id")
    train_hashes = set(dup.loc[dup["fold"] == "train", "md5"])
    val = dup[dup["fold"] == "val"]
    return int(val.loc[val["md5"].isin(train_hashes), "_id"].nunique())
