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

from .errors import InputError
from .topk import floor, read_topk


@dataclass
class Component:
    """``idx`` [N, K] class indices (-1 = none), ``prob`` [N, K]; rows follow the caller's ids."""

    name: str
    idx: np.ndarray
    prob: np.ndarray

    def floor(self, n_classes: int) -> np.ndarray:
        """Per row, the probability of each class outside the row's top K."""
        return floor(self.idx, self.prob, n_classes)

    def lookup(self, cand: np.ndarray, n_classes: int) -> np.ndarray:
        """[N, U] probability of each candidate class under this component."""
        hit = cand[:, :, None] == self.idx[:, None, :]
        hit &= (self.idx >= 0)[:, None, :]
        found = hit.any(axis=2)
        value = np.where(hit, self.prob[:, None, :], 0).sum(axis=2) / np.maximum(hit.sum(axis=2), 1)
        return np.where(found, value, self.floor(n_classes)[:, None]).astype(np.float32)


def read_component(name: str, path: Path, ids: np.ndarray) -> Component:
    """The component at ``path`` aligned to ``ids`` (every id must have a prediction)."""
    got, idx, prob = read_topk(path, ids)
    first = pd.Index(got).drop_duplicates(keep="first")
    pos = pd.Index(got).get_indexer(first)
    where = first.get_indexer(ids)
    if (where < 0).any():
        missing = np.asarray(ids)[where < 0]
        raise InputError(path, f"component {name!r}: {len(missing)} products have no prediction, e.g. _id "
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
