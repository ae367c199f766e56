"""sorted_ids: the binary-search lookup and the ascending-ids check the streaming stages share
(dedup's matched test pictures, the submission's labels in test order, a fold's membership; decode's
and split's one-pass "no _id repeats" check)."""
from __future__ import annotations

import numpy as np
import pytest

from cdiscount.sorted_ids import continues_ascending, find_sorted, isin_sorted


@pytest.mark.parametrize("seed", range(5))
def test_find_sorted_agrees_with_isin_and_points_at_the_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 1_000, size=rng.integers(1, 300)))
    values = rng.integers(-10, 1_010, size=500)  # below, inside and beyond the sorted range
    at, found = find_sorted(values, ids)
    np.testing.assert_array_equal(found, np.isin(values, ids))
    np.testing.assert_array_equal(ids[at[found]], values[found])
    assert ((0 <= at) & (at < len(ids))).all()  # always a valid gather index, found or not
    np.testing.assert_array_equal(isin_sorted(values, ids), found)


def test_an_empty_sorted_side_finds_nothing_and_still_gives_gatherable_shapes() -> None:
    at, found = find_sorted(np.array([3, 1, 2]), np.zeros(0, np.int64))
    assert at.shape == found.shape == (3,)
    assert not found.any()
    assert isin_sorted(np.array([1]), np.zeros(0, np.int64)).tolist() == [False]


@pytest.mark.parametrize("batch, last, want", [
    ([5, 7, 9], None, True), ([5, 7, 9], 4, True), ([5, 7, 9], 5, False),  # starts at the previous end
    ([5, 5, 9], None, False), ([5, 9, 7], 1, False), ([], 100, True), ([3], None, True),
])
def test_continues_ascending_across_batches(batch: list[int], last: int | None, want: bool) -> None:
    assert continues_ascending(np.array(batch, np.int64), last) is want
