"""Lookups in a sorted id array (what ``np.isin`` answers, without sorting the query side) and the
one-pass check that a file's ids ascend.

Stages that stream a table in batches look each batch's ``_id`` up in one sorted array of the ids
they hold (a fold, the matched test products): a binary search per row, no hash set of Python ints.
"""
from __future__ import annotations

import numpy as np


def find_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``values`` sits in an ascending ``sorted_ids``: ``(at, found)``.

    ``at`` is a valid index into ``sorted_ids`` wherever ``found`` is true; elsewhere it is clipped
    to the last element (0 for an empty ``sorted_ids``), so ``x[at[found]]`` gathers at any size.
    One binary search per value: the lookup the streaming stages (a fold's ids, the matched test
    pictures, the labels in submission order) share instead of a join or a dict."""
    values = np.asarray(values)
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=np.intp), np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return at, sorted_ids[at] == values


def isin_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ids)`` for an ascending ``sorted_ids``."""
    return find_sorted(values, sorted_ids)[1]


def continues_ascending(ids: np.ndarray, last: int | None) -> bool:
    """Whether a batch of ``ids`` strictly ascends and starts above ``last`` (the previous batch's
    final id; ``None`` before the first batch): the one-pass check decode and split run to know that
    no ``_id`` repeats in a file (the Kaggle files ascend) without holding the ids seen so far."""
    ids = np.asarray(ids)
    if not len(ids):
        return True
    return bool((np.diff(ids) > 0).all()) and (last is None or bool(ids[0] > last))
