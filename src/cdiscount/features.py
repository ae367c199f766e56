"""Random access to the cached picture features that ``train_backbone`` writes.

Features live in a few float16 ``.npy`` shards, memory-mapped, with an ``index.parquet``
(``_id``, ``img_idx``, ``shard``, ``row``) whose pictures are grouped by product in BSON order.
At real scale they are ~39 GB, so every reader here slices rows, never loads a shard.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .backbones import NO_FEATURES
from .errors import InputError


def read_features(feature_dir: str | Path) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The feature index and its shards, memory-mapped (nothing is loaded until sliced)."""
    feature_dir = Path(feature_dir)
    if not (feature_dir / "index.parquet").exists() and (feature_dir.parent / NO_FEATURES).exists():
        raise InputError(feature_dir, "this backbone wrote no features (its predict.features is false): point "
                         "backbones.primary at a backbone with features, or set its features: true")
    index = pd.read_parquet(feature_dir / "index.parquet")
    shards = [np.load(p, mmap_mode="r") for p in sorted(feature_dir.glob("shard-*.npy"))]
    return index, shards


def gather(index: pd.DataFrame, shards: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """float32 features of the pictures at ``positions`` (rows of ``index``), read shard by shard."""
    positions = np.asarray(positions, dtype=np.int64)
    shard = index["shard"].to_numpy()[positions]
    row = index["row"].to_numpy()[positions]
    out = np.empty((len(positions), shards[0].shape[1]), dtype=np.float32)
    for s in np.unique(shard):
        sel = shard == s
        out[sel] = shards[s][row[sel]]
    return out


def product_spans(image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(product_ids, first_row, n_pictures)`` of an index whose products are contiguous.

    A product id that appears in two separate runs is an error: it would mean the index was
    reordered and per-product pooling would silently split a product.
    """
    image_ids = np.asarray(image_ids)
    if len(image_ids) == 0:
        return image_ids[:0], np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, image_ids[1:] != image_ids[:-1]])
    ids = image_ids[start]
    if len(np.unique(ids)) != len(ids):
        raise ValueError("feature index: pictures of a product are not contiguous")
    return ids, start, np.diff(np.r_[start, len(image_ids)])


def padded(index: pd.DataFrame, shards: list[np.ndarray], start: np.ndarray, count: np.ndarray,
           max_pictures: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of a batch of products as ``[B, max_pictures, D]`` plus a boolean picture mask.

    Products with more pictures than ``max_pictures`` keep their first ones (Cdiscount has <= 4).
    """
    n = np.minimum(count, max_pictures)
    slot = np.concatenate([np.arange(k) for k in n]) if len(n) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(n)), n)
    rows = np.repeat(start, n) + slot
    feats = gather(index, shards, rows)
    out = np.zeros((len(n), max_pictures, feats.shape[1]), dtype=np.float32)
    mask = np.zeros((len(n), max_pictures), dtype=bool)
    out[owner, slot] = feats
    mask[owner, slot] = True
    return out, mask
