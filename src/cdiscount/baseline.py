"""Stage ``baseline``: the organiser's "image similarity" benchmark (Kaggle 0.51759).

Each picture gets a 64-bit perceptual hash (``imagehash.phash``); a validation product takes
the category of the training picture nearest to any of its pictures in Hamming distance.
Its validation ``product_accuracy`` is the floor every model run is reported against.

Search: exact brute force (XOR + popcount, in chunks) while ``queries x references`` stays
under ``brute_force_pairs``; beyond that (the real 12 M x 1.2 M), a multi-index over the
hash's four 16-bit bands finds every neighbour within distance 3 (pigeonhole), and products
with none fall back to the most frequent category.
"""
from __future__ import annotations

import io
import logging
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .atomic import write_json
from .bson_io import open_store
from .errors import WorkerLost
from .params import Section

log = logging.getLogger(__name__)


def phash64(jpeg: bytes) -> np.uint64:
    """64-bit perceptual hash of a picture."""
    bits = imagehash.phash(Image.open(io.BytesIO(jpeg))).hash.ravel()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def _hash_rows(args: tuple[str, str, np.ndarray]) -> np.ndarray:
    interim, split, rows = args
    store = open_store(interim, split)
    try:
        return np.array([phash64(store.read_row(int(r))) for r in rows], dtype=np.uint64)
    finally:
        store.close()


def hash_split(interim: Path, split: str, rows: np.ndarray, workers: int, progress: bool) -> np.ndarray:
    """Perceptual hashes of ``rows`` of a split, in parallel over processes."""
    chunks = np.array_split(rows, max(1, len(rows) // 2000))
    out: list[np.ndarray] = []
    with ProcessPoolExecutor(max_workers=workers or None) as pool:
        try:
            for h in tqdm(pool.map(_hash_rows, [(str(interim), split, c) for c in chunks]), total=len(chunks),
                          desc=f"phash {split}", disable=not progress):
                out.append(h)
        except BrokenProcessPool:  # a killed worker: say so, rather than the pool's bare message
            raise WorkerLost(f"{interim}: perceptual hashes of {split} pictures", "lower baseline.workers") from None
    return np.concatenate(out) if out else np.zeros(0, np.uint64)


def nearest(queries: np.ndarray, refs: np.ndarray, brute_force_pairs: int,
            chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest reference hash and its Hamming distance, for every query.

    Exact by brute force within budget; otherwise exact up to distance 3 (index -1 beyond).
    """
    if len(queries) * len(refs) <= brute_force_pairs:
        best = np.empty(len(queries), np.int64)
        dist = np.empty(len(queries), np.int64)
        for s in range(0, len(queries), chunk):
            d = np.bitwise_count(queries[s : s + chunk, None] ^ refs[None, :])
            best[s : s + chunk] = d.argmin(axis=1)
            dist[s : s + chunk] = d.min(axis=1)
        return best, dist
    return _multi_index(queries, refs)


def _multi_index(queries: np.ndarray, refs: np.ndarray, radius: int = 3) -> tuple[np.ndarray, np.ndarray]:
    best = np.full(len(queries), -1, np.int64)
    dist = np.full(len(queries), 65, np.int64)
    for band in range(4):
        shift = np.uint64(16 * band)
        ref_key = (refs >> shift) & np.uint64(0xFFFF)
        order = np.argsort(ref_key, kind="stable")
        sorted_keys = ref_key[order]
        q_key = (queries >> shift) & np.uint64(0xFFFF)
        lo = np.searchsorted(sorted_keys, q_key, "left")
        hi = np.searchsorted(sorted_keys, q_key, "right")
        for i in np.flatnonzero(hi > lo):
            cand = order[lo[i] : hi[i]]
            d = np.bitwise_count(refs[cand] ^ queries[i])
            j = int(d.argmin())
            if d[j] < dist[i]:
                best[i], dist[i] = cand[j], d[j]
    best[dist > radius] = -1
    return best, dist


@dataclass(frozen=True)
class BaselineConfig(Section):
    """The ``baseline`` section of params.yaml."""

    SECTION = "baseline"
    workers: int  # processes hashing pictures; 0 = all cores
    brute_force_pairs: int  # exact search below this many query x reference pairs

    def check(self) -> None:
        self.require("workers", self.workers >= 0, "0 (all cores) or a number of processes")
        self.require("brute_force_pairs", self.brute_force_pairs >= 0, "a number of pairs >= 0")


def run_baseline(interim: Path, split_path: Path, metrics_path: Path, cfg: BaselineConfig, *,
                 progress: bool = True) -> dict[str, Any]:
    """Validation product accuracy of the perceptual-hash nearest-neighbour benchmark."""
    workers, brute_force_pairs = cfg.workers, cfg.brute_force_pairs
    images = pd.read_parquet(interim / "train_images.parquet", columns=["_id", "category_id"])
    fold = images["_id"].map(pd.read_parquet(split_path, columns=["_id", "fold"]).set_index("_id")["fold"])
    fold = fold.astype(str).to_numpy()
    train_rows, val_rows = np.flatnonzero(fold == "train"), np.flatnonzero(fold == "val")
    h_train = hash_split(interim, "train", train_rows, workers, progress)
    h_val = hash_split(interim, "train", val_rows, workers, progress)
    best, dist = nearest(h_val, h_train, brute_force_pairs)
    cats = images["category_id"].to_numpy()
    prior = int(pd.Series(cats[train_rows]).mode().iloc[0])
    val = pd.DataFrame({"_id": images["_id"].to_numpy()[val_rows], "true": cats[val_rows], "dist": dist,
                        "pred": np.where(best >= 0, cats[train_rows][np.maximum(best, 0)], prior)})
    per_product = val.sort_values(["_id", "dist"]).groupby("_id").first()  # nearest over the product's pictures
    metrics = {
        "product_accuracy": float((per_product["pred"] == per_product["true"]).mean()),
        "image_accuracy": float((val["pred"] == val["true"]).mean()),
        "exact_match_rate": float((val["dist"] == 0).mean()),
        "products": int(len(per_product)),
    }
    write_json(metrics_path, metrics)
    log.info("baseline (perceptual hash, nearest training picture): %s", metrics)
    return metrics
