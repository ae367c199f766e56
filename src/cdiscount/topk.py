"""Top-K predictions: the exchange format between model stages and the ensemble.

Dense 5,270-wide probability matrices do not fit at real scale (18.6 GB for the test set in
fp16); each product keeps its K best classes and their probabilities instead (80 bytes at
K = 20). Product scores are the mean of the image log-probabilities, as the top Kaggle teams
scored products.

Everything that reads, writes or expands top-K rows lives here: :func:`read_topk` /
:func:`iter_topk` stream a file into ``[N, K]`` arrays (``-1`` pads rows with fewer classes),
:func:`product_table` builds rows to write, :func:`floor` is the probability a row gives every
class outside its top K (its left-over mass spread evenly), :func:`densify` expands chunks of
rows into dense columns for the few thousand products in flight.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .parquet_file import parquet_file

if TYPE_CHECKING:  # torch is imported where tensors are used: stages that only read top-K start in 1 s, not 5
    import torch

SCHEMA_FIELDS = [("top_idx", pa.list_(pa.int16())), ("top_prob", pa.list_(pa.float32()))]
PRODUCT_SCHEMA = pa.schema([("_id", pa.int64()), *SCHEMA_FIELDS])
#: Rows per streamed batch: about 40 MB of arrays at K = 20.
BATCH_ROWS = 262_144


def product_table(ids, top_idx, top_prob) -> pa.Table:
    """Rows of the per-product exchange format: ``[N, K]`` classes and probabilities (or N rows of K)."""
    return pa.table({"_id": np.asarray(ids, dtype=np.int64), "top_idx": list(np.asarray(top_idx, dtype=np.int16)),
                     "top_prob": list(np.asarray(top_prob, dtype=np.float32))}, schema=PRODUCT_SCHEMA)


def writer(path: str | Path) -> pq.ParquetWriter:
    """A writer of product top-K rows (``with writer(p) as w: w.write_table(product_table(...))``)."""
    return pq.ParquetWriter(path, PRODUCT_SCHEMA)


def topk(probs: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise K best classes (int16) and probabilities (float32) of a [N, C] matrix."""
    p, i = probs.float().topk(min(k, probs.shape[1]), dim=1)
    return i.cpu().numpy().astype(np.int16), p.cpu().numpy().astype(np.float32)


def _padded(lists: pa.ListArray, fill, dtype) -> np.ndarray:
    """A list column as a [N, K] array (K = longest list; shorter rows padded with ``fill``)."""
    offsets = lists.offsets.to_numpy()
    lengths = np.diff(offsets)
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(dtype)
    k = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(lengths), k), fill, dtype=dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    out[rows, np.arange(len(values)) - np.repeat(offsets[:-1], lengths)] = values
    return out


def iter_topk(path: str | Path, ids: np.ndarray | None = None, batch_rows: int = BATCH_ROWS
              ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream ``(_id, top_idx [n, K], top_prob [n, K])`` batches of a top-K file in file order,
    keeping only ``ids`` if given (memory: one batch)."""
    wanted = None if ids is None else np.asarray(ids)
    for batch in parquet_file(path).iter_batches(batch_size=batch_rows, columns=["_id", "top_idx", "top_prob"]):
        bid = batch.column(0).to_numpy()
        keep = np.isin(bid, wanted) if wanted is not None else np.ones(len(bid), dtype=bool)
        if keep.any():
            rows = pa.array(np.flatnonzero(keep))
            yield (bid[keep], _padded(batch.column(1).take(rows), -1, np.int64),
                   _padded(batch.column(2).take(rows), 0.0, np.float32))


def read_topk(path: str | Path, ids: np.ndarray | None = None, batch_rows: int = BATCH_ROWS
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(_id, top_idx [N, K], top_prob [N, K])`` of a top-K file, keeping only ``ids`` if given.

    Streams row groups and never builds Python lists, so reading the validation tenth of the
    backbone's 7 M training products costs memory for that tenth only.
    """
    return concat(list(iter_topk(path, ids, batch_rows)))


def concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batches of ``(_id, top_idx, top_prob)`` as one; narrower rows padded (-1 / 0) to the widest."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
    k = max(p[1].shape[1] for p in parts)
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([np.pad(p[1], ((0, 0), (0, k - p[1].shape[1])), constant_values=-1) for p in parts]),
            np.concatenate([np.pad(p[2], ((0, 0), (0, k - p[2].shape[1]))) for p in parts]))


def read_top1(path: str | Path) -> pd.Series:
    """``_id`` -> top-1 class index of every row of a top-K file, streamed (8 + 8 bytes a product)."""
    ids, top = [], []
    for bid, idx, _ in iter_topk(path):
        ids.append(bid)
        top.append(idx[:, 0] if idx.shape[1] else np.full(len(bid), -1, np.int64))
    return pd.Series(np.concatenate(top) if top else np.zeros(0, np.int64),
                     index=np.concatenate(ids) if ids else np.zeros(0, np.int64))


def floor(idx: np.ndarray, prob: np.ndarray, n_classes: int, minimum: float = 1e-9) -> np.ndarray:
    """Per row, the probability of each class outside the row's top K: the mass the top K left
    over, spread evenly (at least ``minimum``, so no class is impossible)."""
    valid = idx >= 0
    rest = np.clip(1.0 - np.where(valid, prob, 0).sum(axis=1), 0.0, None)
    return np.maximum(rest / np.maximum(n_classes - valid.sum(axis=1), 1), minimum)


def densify(top_idx, top_prob, n_classes: int) -> np.ndarray:
    """[N, C] float32 probabilities from top-K rows ([N, K] arrays or lists, -1 = padding); the mass
    outside the top K is spread evenly and each row sums to 1."""
    if not len(top_idx):
        return np.zeros((0, n_classes), dtype=np.float32)
    idx = np.asarray(top_idx, dtype=np.int64)  # [N, K] arrays (read_topk) or equal-length lists: no row loop
    prob = np.asarray(top_prob, dtype=np.float32)
    pad = idx < 0
    prob = np.where(pad, 0.0, prob).astype(np.float32)
    rest = np.clip(1.0 - prob.sum(axis=1), 0.0, None) / np.maximum(n_classes - (~pad).sum(axis=1), 1)
    out = np.repeat(rest[:, None].astype(np.float32), n_classes, axis=1)
    # a pad re-writes the row's first class with its own value (the first slot is never a pad)
    np.put_along_axis(out, np.where(pad, idx[:, :1], idx), np.where(pad, prob[:, :1], prob), axis=1)
    return out / out.sum(axis=1, keepdims=True)


def densify_columns(top_idx: np.ndarray, top_prob: np.ndarray, columns: np.ndarray, n_classes: int,
                    spread_over: int | None = None) -> np.ndarray:
    """[N, len(columns)] float64 probabilities of the chosen classes only, from [N, K] top-K rows
    (-1 = padding): a class outside a row's top K gets the row's even share of the left-over mass,
    shared by ``spread_over`` classes (default ``n_classes``; a group expert's rows spread it over
    its group). Rows are not renormalised over ``columns``: the caller decides how (e.g. OCR
    fusion floors then rescales). Memory is N x len(columns), never N x n_classes."""
    columns = np.asarray(columns, dtype=np.int64)
    idx = np.asarray(top_idx, dtype=np.int64).reshape(len(top_idx), -1)
    prob = np.asarray(top_prob, dtype=np.float64).reshape(len(top_prob), -1)
    valid = idx >= 0
    prob = np.where(valid, prob, 0.0)
    spread = n_classes if spread_over is None else spread_over
    rest = np.clip(1.0 - prob.sum(axis=1), 0.0, None) / np.maximum(spread - valid.sum(axis=1), 1)
    col = np.full(n_classes, -1, dtype=np.int64)
    col[columns] = np.arange(len(columns))
    out = np.repeat(rest[:, None], len(columns), axis=1)
    j = np.where(valid, col[np.where(valid, idx, 0)], -1)
    rows, slots = np.nonzero(j >= 0)
    out[rows, j[rows, slots]] = prob[rows, slots]
    return out


class ProductAggregator:
    """Streams image log-probabilities, grouped by consecutive product ``_id``, into product scores.

    Images of a product are contiguous in every index this pipeline writes, so one running sum
    per product is all the memory needed. A batch is reduced with one ``index_add_`` over its runs
    of equal ids (no Python loop per picture: at 15.5 M pictures that loop was minutes of GPU
    idle time); the last run may continue in the next batch, so it is carried over.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._id: int | None = None
        self._sum: torch.Tensor | None = None
        self._n = 0

    def add(self, ids: np.ndarray, logp: torch.Tensor) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Feed a batch; yields ``(_id, top_idx, top_prob)`` for each product completed by it."""
        import torch

        ids = np.asarray(ids)
        if not len(ids):
            return
        logp = logp.float()
        start = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        run_ids = ids[start]
        counts = np.diff(np.r_[start, len(ids)])
        seg = torch.from_numpy(np.repeat(np.arange(len(start)), counts))
        rows = logp
        if self._id is not None and run_ids[0] == self._id:  # the carried product goes on: its sum first
            seg, rows = torch.cat([torch.zeros(1, dtype=seg.dtype), seg]), torch.cat([self._sum[None], logp])
            counts = counts.copy()
            counts[0] += self._n
        elif self._id is not None:
            yield from self.flush()
        sums = torch.zeros(len(start), logp.shape[1], dtype=logp.dtype).index_add_(0, seg, rows)
        yield from self._emit(run_ids[:-1], sums[:-1], counts[:-1])
        self._id, self._sum, self._n = int(run_ids[-1]), sums[-1].clone(), int(counts[-1])

    def flush(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if self._id is not None:
            yield from self._emit(np.array([self._id]), self._sum[None], np.array([self._n]))
            self._id = None

    def _emit(self, ids: np.ndarray, sums: torch.Tensor, counts: np.ndarray
              ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        import torch

        if not len(ids):
            return
        probs = torch.softmax(sums / torch.from_numpy(counts.astype(np.float32))[:, None], dim=1)
        idx, prob = topk(probs, self.k)
        for pid, i, p in zip(ids.tolist(), idx, prob):
            yield pid, i, p
