"""Per-product top-K predictions of one model stage, aligned to a fixed product order.

The ensemble combines components without ever building 5,270-wide rows: each product's
candidates are the union of the components' top-K classes, and a class outside a component's
top K gets that component's *floor*, its left-over mass spread evenly over the other classes.
Rows with fewer than K classes (a duplicate-picture vote, say) pad ``idx`` with -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class Component:
    """``idx`` [N, K] class indices (-1 = none), ``prob`` [N, K]; rows follow the caller's ids."""

    name: str
    idx: np.ndarray
    prob: np.ndarray

    def floor(self, n_classes: int) -> np.ndarray:
        """Per row, the probability of each class outside the row's top K."""
        valid = self.idx >= 0
        rest = np.clip(1.0 - np.where(valid, self.prob, 0).sum(axis=1), 0.0, None)
        return np.maximum(rest / np.maximum(n_classes - valid.sum(axis=1), 1), 1e-9)

    def lookup(self, cand: np.ndarray, n_classes: int) -> np.ndarray:
        """[N, U] probability of each candidate class under this component."""
        hit = cand[:, :, None] == self.idx[:, None, :]
        hit &= (self.idx >= 0)[:, None, :]
        found = hit.any(axis=2)
        value = np.where(hit, self.prob[:, None, :], 0).sum(axis=2) / np.maximum(hit.sum(axis=2), 1)
        return np.where(found, value, self.floor(n_classes)[:, None]).astype(np.float32)


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


def read_topk(path: Path, ids: np.ndarray | None = None, batch_rows: int = 262_144
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(_id, top_idx [N, K], top_prob [N, K])`` of a top-K file, keeping only ``ids`` if given.

    Streams row groups and never builds Python lists, so reading the validation tenth of the
    backbone's 7 M training products costs memory for that tenth only.
    """
    wanted = None if ids is None else np.asarray(ids)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["_id", "top_idx", "top_prob"]):
        bid = batch.column(0).to_numpy()
        keep = np.isin(bid, wanted) if wanted is not None else np.ones(len(bid), dtype=bool)
        if keep.any():
            rows = pa.array(np.flatnonzero(keep))
            parts.append((bid[keep], _padded(batch.column(1).take(rows), -1, np.int64),
                          _padded(batch.column(2).take(rows), 0.0, np.float32)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
    k = max(p[1].shape[1] for p in parts)
    pad = [(i, np.pad(t, ((0, 0), (0, k - t.shape[1])), constant_values=-1),
            np.pad(q, ((0, 0), (0, k - q.shape[1])))) for i, t, q in parts]
    return (np.concatenate([p[0] for p in pad]), np.concatenate([p[1] for p in pad]),
            np.concatenate([p[2] for p in pad]))


def read_component(name: str, path: Path, ids: np.ndarray) -> Component:
    """The component at ``path`` aligned to ``ids`` (every id must have a prediction)."""
    got, idx, prob = read_topk(path, ids)
    first = pd.Index(got).drop_duplicates(keep="first")
    pos = pd.Index(got).get_indexer(first)
    where = first.get_indexer(ids)
    if (where < 0).any():
        missing = np.asarray(ids)[where < 0]
        raise ValueError(f"component {name!r}: {len(missing)} products have no prediction in {path}, e.g. _id "
                         f"{missing[:5].tolist()}")
    rows = pos[where]
    return Component(name, idx[rows], prob[rows])


def candidates(components: list[Component]) -> np.ndarray:
    """[N, U] union of the components' top-K classes (duplicates and -1 pads are harmless)."""
    cand = np.concatenate([c.idx for c in components], axis=1)
    first = cand[:, :1]
    return np.where(cand >= 0, cand, first)  # a pad repeats the row's first candidate


def combine(log_probs: np.ndarray, probs: np.ndarray, weights: np.ndarray, mean: str) -> np.ndarray:
    """[N, U] ensemble scores from per-component [M, N, U] candidate (log-)probabilities."""
    w = np.asarray(weights, dtype=np.float32)[:, None, None]
    if mean == "geometric":
        return (w * log_probs).sum(axis=0)
    if mean == "arithmetic":
        return np.log(np.maximum((w * probs).sum(axis=0), 1e-12))
    raise ValueError(f"ensemble.mean must be geometric or arithmetic, got {mean!r}")


def simplex_grid(m: int, step: float) -> np.ndarray:
    """Every weight vector of ``m`` non-negative multiples of ``step`` summing to 1."""
    n = round(1 / step)

    def rec(k: int, left: int):
        if k == 1:
            yield (left,)
            return
        for i in range(left + 1):
            for rest in rec(k - 1, left - i):
                yield (i, *rest)

    return np.array(list(rec(m, n)), dtype=np.float64) / n
