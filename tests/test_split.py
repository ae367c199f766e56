import numpy as np
import pandas as pd
import pytest

from cdiscount.split import assign_folds

#: The fold rules of the repository's params.yaml.
RULES = {"cap_per_category": 0, "min_products_for_val": 2}


def _products(counts: dict[int, int]) -> pd.DataFrame:
    rows = [(cid, i) for cid, n in counts.items() for i in range(n)]
    return pd.DataFrame({"_id": np.arange(len(rows)) * 3 + 1, "category_id": [c for c, _ in rows]})


def test_stratified_deterministic_and_small_categories_stay_in_train() -> None:
    prods = _products({10: 100, 20: 30, 30: 2, 40: 1})
    a = assign_folds(prods, seed=1, val_fraction=0.1, **RULES)
    b = assign_folds(prods.sample(frac=1, random_state=3), seed=1, val_fraction=0.1, **RULES)
    pd.testing.assert_frame_equal(a, b)  # input order does not matter
    val = a[a["fold"] == "val"].groupby("category_id").size()
    assert val.to_dict() == {10: 10, 20: 3, 30: 1}
    assert (a.loc[a["category_id"] == 40, "fold"] == "train").all()
    assert set(a["_id"]) == set(prods["_id"])  # nothing lost
    c = assign_folds(prods, seed=2, val_fraction=0.1, **RULES)
    assert not a["fold"].equals(c["fold"])


def test_adding_a_category_does_not_reshuffle_others() -> None:
    a = assign_folds(_products({10: 50, 20: 40}), seed=0, val_fraction=0.2, **RULES)
    prods = _products({10: 50, 20: 40})
    extra = pd.DataFrame({"_id": [10_001, 10_002, 10_003], "category_id": [99, 99, 99]})
    b = assign_folds(pd.concat([prods, extra]), seed=0, val_fraction=0.2, **RULES)
    pd.testing.assert_frame_equal(a, b[b["category_id"] != 99].reset_index(drop=True))


def test_cap_marks_excess_training_products_unused() -> None:
    s = assign_folds(_products({10: 100, 20: 5}), seed=0, val_fraction=0.1, cap_per_category=20, min_products_for_val=2)
    counts = s.groupby(["category_id", "fold"], observed=True).size().to_dict()
    assert counts == {(10, "train"): 20, (10, "val"): 10, (10, "unused"): 70, (20, "train"): 4, (20, "val"): 1}


@pytest.mark.parametrize("kw", [{"val_fraction": 1.0}, {"val_fraction": 0.1, "min_products_for_val": 1}])
def test_invalid_params_are_rejected(kw) -> None:
    with pytest.raises(ValueError):
        assign_folds(_products({10: 5}), seed=0, **{**RULES, **kw})
