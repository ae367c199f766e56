"""Membership in a sorted id array: what ``np.isin`` answers, without sorting the query side.

Stages that stream a table in batches look each batch's ``_id`` up in one sorted array of the ids
they hold (a fold, the matched test products): a binary search per row, no hash set of Python ints.
"""
from __future__ import annotations

import numpy as np


def isin_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ids)`` for an ascending ``sorted_ids``."""
    values = np.asarray(values)
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[at] == values
