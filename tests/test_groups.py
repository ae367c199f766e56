import numpy as np
import pytest

from cdiscount.groups import all_group, confusion_groups, level1_accuracy_groups


def _pairs(spec: dict[tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    true = np.concatenate([[t] * n for (t, _), n in spec.items()])
    pred = np.concatenate([[p] * n for (_, p), n in spec.items()])
    return true, pred


def test_confusion_groups_need_k_in_both_matrices_and_merge_transitively() -> None:
    train = _pairs({(0, 1): 5, (1, 2): 4, (3, 4): 9, (5, 6): 1, (7, 7): 50})
    val = _pairs({(1, 0): 1, (0, 1): 3, (2, 1): 3, (3, 4): 2, (5, 6): 8, (7, 7): 40})
    assert confusion_groups(train, val, 8, k=3) == [[0, 1]]  # 1->2 is 4 / 0 in val; 3->4 only 2 in val
    assert confusion_groups(train, val, 8, k=2) == [[0, 1], [3, 4]]
    train2 = _pairs({(0, 1): 5, (1, 2): 4})
    val2 = _pairs({(0, 1): 5, (1, 2): 4})
    assert confusion_groups(train2, val2, 3, k=3) == [[0, 1, 2]]  # chains merge into one set


def test_confusion_groups_edge_cases() -> None:
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert confusion_groups(empty, empty, 5, k=1) == []
    diag = _pairs({(2, 2): 30})
    assert confusion_groups(diag, diag, 5, k=1) == []  # correct predictions are no confusion


def test_level1_accuracy_bands() -> None:
    level1 = np.array(["A", "A", "B", "B", "C", "C", "D", "E", "E"])
    # true / predicted class indices: A always right, B half right at coarse level, C wrong, D singleton
    true = np.array([0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 8])
    pred = np.array([1, 0, 0, 1, 2, 0, 3, 4, 0, 2, 0, 1, 6, 8, 7])
    groups = level1_accuracy_groups(true, pred, level1, high=0.9, low=0.6)
    assert groups["level1: A"] == [0, 1]
    assert groups["level1: E"] == [7, 8]
    assert groups["band: low"] == [2, 3, 4, 5]  # B (0.5) and C (0.0) are pooled
    assert "band: middle" not in groups  # empty
    assert all(len(g) >= 2 for g in groups.values())
    assert 6 not in sum(groups.values(), [])  # the singleton D gets no expert
    with pytest.raises(ValueError):
        level1_accuracy_groups(true, pred, level1, high=0.5, low=0.6)


def test_all_method_is_one_group_of_every_category() -> None:
    assert all_group(5) == {"all": [0, 1, 2, 3, 4]}
    assert all_group(1) == {}  # one category: nothing for an expert to choose
