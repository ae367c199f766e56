"""Stage ``train_backbone``, inference half: features and top-K predictions for every picture.

Runs the trained CNN once over all train and test pictures, so later stages (experts,
fusion, OCR fusion, ensemble) never run it again. Writes float16 bottleneck features into
a few memory-mapped ``.npy`` shards with an index, and top-K predictions per picture and per
product. Optional flip test-time augmentation averages the probabilities (and features) of
each picture and its mirror.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import atomic_dir
from .backbones import NO_FEATURES
from .data import ImageDataset
from .bson_io import open_store
from .images import normalise
from .malloc_tuning import fix_mmap_threshold
from .topk import PRODUCT_SCHEMA, SCHEMA_FIELDS, ProductAggregator, product_table, topk
from .train import autocast

log = logging.getLogger(__name__)

IMAGE_SCHEMA = pa.schema([("_id", pa.int64()), ("img_idx", pa.int32()), *SCHEMA_FIELDS])


@torch.no_grad()
def infer_split(model, store, images: pd.DataFrame, image_size: int, *, feature_dir: Path | None,
                image_preds: Path, product_preds: Path, top_k: int = 20, flip_tta: bool = True,
                batch_size: int = 128, workers: int = 2, shard_rows: int = 1_000_000, amp: str = "auto",
                channels_last: bool = True, progress: bool = True, desc: str = "infer") -> None:
    """Features and top-K predictions for ``images`` (rows of the store, products contiguous);
    ``feature_dir=None`` writes the predictions only.

    Fixes glibc's mmap threshold first (process-wide, see :mod:`~cdiscount.malloc_tuning`): with the
    dynamic one this loop's per-batch probability buffers piled up in the heap, ~1 KB per picture."""
    fix_mmap_threshold()
    device = next(model.parameters()).device
    ds = ImageDataset(store, images.index.to_numpy(), None, image_size)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    n, dim = len(images), model.feature_dim
    shards = FeatureShards(feature_dir, n, dim, shard_rows) if feature_dir is not None else None
    ids = images["_id"].to_numpy()
    img_idx = images["img_idx"].to_numpy()
    agg = ProductAggregator(top_k)
    done = 0
    with pq.ParquetWriter(image_preds, IMAGE_SCHEMA) as iw, pq.ParquetWriter(product_preds, PRODUCT_SCHEMA) as pw:
        for x, _, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            x = normalise(x.to(device, non_blocking=True), model.norm.mean, model.norm.std)
            views = [x, x.flip(-1)] if flip_tta else [x]
            feats, probs = 0, 0
            for v in views:
                if channels_last:
                    v = v.contiguous(memory_format=torch.channels_last)
                with autocast(device, amp):
                    f = model.features(v)
                    p = torch.softmax(model.head(f).float(), dim=1)
                feats = feats + f.float() / len(views)
                probs = probs + p / len(views)
            b = len(x)
            rows = np.arange(done, done + b)
            if shards is not None:
                shards.append(feats.cpu().numpy().astype(np.float16))
            t_idx, t_prob = topk(probs, top_k)
            iw.write_table(pa.table({"_id": ids[rows], "img_idx": img_idx[rows].astype(np.int32),
                                     "top_idx": list(t_idx), "top_prob": list(t_prob)}, schema=IMAGE_SCHEMA))
            done_products = list(agg.add(ids[rows], torch.log(probs.clamp_min(1e-12)).cpu()))
            if done_products:
                pw.write_table(_products_table(done_products))
            done += b
        pw.write_table(_products_table(list(agg.flush())))
    if shards is None:
        return
    shards.close()
    pd.DataFrame({"_id": ids, "img_idx": img_idx.astype(np.int32),
                  "shard": (np.arange(n) // shard_rows).astype(np.int32),
                  "row": (np.arange(n) % shard_rows).astype(np.int64)}).to_parquet(feature_dir / "index.parquet",
                                                                                  index=False)


class FeatureShards:
    """The ``.npy`` feature shards, written row after row through plain file writes.

    Why not a writable memmap of each shard: every page written through one stays mapped in this
    process, so the stage's resident memory grew by the features themselves (1.2 M pictures x 512 x
    2 bytes at F = 0.1, counted in its RSS and PSS). Written with ``write`` the same bytes only pass
    through the page cache. The headers are numpy's own (``open_memmap`` creates each file), so the
    files are byte for byte what the memmap wrote.
    """

    def __init__(self, feature_dir: Path, n: int, dim: int, shard_rows: int) -> None:
        feature_dir.mkdir(parents=True, exist_ok=True)
        self.files = []
        for s in range(max(1, -(-n // shard_rows))):
            path = feature_dir / f"shard-{s:04d}.npy"
            header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                               shape=(min(shard_rows, n - s * shard_rows), dim))
            self.files.append((path, header.offset, header.shape[0]))
            del header  # the file exists at its full size; nothing stays mapped
        self.shard, self.row, self.f = 0, 0, None

    def append(self, rows: np.ndarray) -> None:
        """Write the next ``len(rows)`` feature rows (float16, in image order)."""
        while len(rows):
            path, offset, size = self.files[self.shard]
            if self.f is None:
                self.f = open(path, "r+b")
                self.f.seek(offset)
            take = min(size - self.row, len(rows))
            self.f.write(np.ascontiguousarray(rows[:take]).tobytes())
            rows, self.row = rows[take:], self.row + take
            if self.row == size:
                self.f.close()
                self.f, self.shard, self.row = None, self.shard + 1, 0

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        if self.shard < len(self.files) and not (self.shard == len(self.files) - 1 and self.files[-1][2] == 0):
            raise AssertionError(f"feature shards: wrote {self.shard} of {len(self.files)} shards "
                                 f"(shard {self.shard} at row {self.row})")


def _products_table(rows: list[tuple[int, np.ndarray, np.ndarray]]) -> pa.Table:
    return product_table([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def run_inference(model, blob: dict[str, Any], interim: Path, features_root: Path, preds_dir: Path, *,
                  top_k: int, flip_tta: bool, batch_size: int, workers: int, shard_rows: int, amp: str,
                  progress: bool, features: bool = True) -> None:
    """Features and predictions for train.bson and test.bson pictures (written atomically per folder).

    ``features=False`` leaves ``features_root`` holding only a note saying so (the folder is still a
    stage output): at real scale a backbone whose features nobody reads saves ~39 GB and their writing."""
    with atomic_dir(features_root) as feat_tmp, atomic_dir(preds_dir) as pred_tmp:
        if not features:
            (feat_tmp / NO_FEATURES).write_text(
                "This backbone was run with predict.features: false (top-K predictions only, no feature shards).\n"
                "Stages reading features (specific, fusion) need a backbone with features: the primary one.\n")
        for split in ("train", "test"):
            images = pd.read_parquet(interim / f"{split}_images.parquet", columns=["_id", "img_idx"])
            store = open_store(interim, split)
            infer_split(model, store, images, blob["image_size"], feature_dir=feat_tmp / split if features else None,
                        image_preds=pred_tmp / f"{split}_images.parquet",
                        product_preds=pred_tmp / f"{split}_products.parquet", top_k=top_k, flip_tta=flip_tta,
                        batch_size=batch_size, workers=workers, shard_rows=shard_rows, amp=amp,
                        channels_last=blob["config"].get("channels_last", True), progress=progress,
                        desc=f"features {split}")
            store.close()

