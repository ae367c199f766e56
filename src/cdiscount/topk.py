"""Top-K predictions: the exchange format between model stages and the ensemble.

Dense 5,270-wide probability matrices do not fit at real scale (18.6 GB for the test set in
fp16); each product keeps its K best classes and their probabilities instead (80 bytes at
K = 20). Product scores are the mean of the image log-probabilities, as the top Kaggle teams
scored products.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch

SCHEMA_FIELDS = [("top_idx", pa.list_(pa.int16())), ("top_prob", pa.list_(pa.float32()))]
PRODUCT_SCHEMA = pa.schema([("_id", pa.int64()), *SCHEMA_FIELDS])


def product_table(ids, top_idx, top_prob) -> pa.Table:
    """Rows of the per-product exchange format: ``[N, K]`` classes and probabilities (or N rows of K)."""
    return pa.table({"_id": np.asarray(ids, dtype=np.int64), "top_idx": list(np.asarray(top_idx, dtype=np.int16)),
                     "top_prob": list(np.asarray(top_prob, dtype=np.float32))}, schema=PRODUCT_SCHEMA)


def topk(probs: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise K best classes (int16) and probabilities (float32) of a [N, C] matrix."""
    p, i = probs.float().topk(min(k, probs.shape[1]), dim=1)
    return i.cpu().numpy().astype(np.int16), p.cpu().numpy().astype(np.float32)


class ProductAggregator:
    """Streams image log-probabilities, grouped by consecutive product ``_id``, into product scores.

    Images of a product are contiguous in every index this pipeline writes, so one running sum
    per product is all the memory needed.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._id: int | None = None
        self._sum: torch.Tensor | None = None
        self._n = 0

    def add(self, ids: np.ndarray, logp: torch.Tensor) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Feed a batch; yields ``(_id, top_idx, top_prob)`` for each product completed by it."""
        for pid, row in zip(ids.tolist(), logp.float()):
            if pid != self._id and self._id is not None:
                yield self._emit()
            if pid != self._id:
                self._id, self._sum, self._n = pid, row.clone(), 1
            else:
                self._sum += row
                self._n += 1

    def flush(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if self._id is not None:
            yield self._emit()
            self._id = None

    def _emit(self) -> tuple[int, np.ndarray, np.ndarray]:
        probs = torch.softmax(self._sum / self._n, dim=0)[None]
        idx, prob = topk(probs, self.k)
        return self._id, idx[0], prob[0]
