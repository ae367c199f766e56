import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscount.split import assign_folds, stream_folds, val_matches

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
def test_invalid_params_are_rejected(kw, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split.(val_fraction|min_products_for_val) must"):
        assign_folds(_products({10: 5}), seed=0, **{**RULES, **kw})
    # the streamed split checks them before it reads a product (here: a file that is not even there)
    with pytest.raises(ValueError, match="split.(val_fraction|min_products_for_val) must"):
        stream_folds(tmp_path / "missing.parquet", tmp_path / "out.parquet", seed=0, **{**RULES, **kw})


# --- the streamed split (issue 11): the same bytes as the in-memory one, a byte per product ----------------


def _long_tail(n: int, seed: int = 0) -> pd.DataFrame:
    """Products in ascending ``_id`` order, categories drawn from a long tail (some of one product)."""
    rng = np.random.default_rng(seed)
    cats = 1000 + rng.zipf(1.6, size=n) % 97 * 7
    return pd.DataFrame({"_id": np.cumsum(rng.integers(1, 5, size=n)), "category_id": cats.astype(np.int64)})


@pytest.mark.parametrize("cap", [0, 3])
@pytest.mark.parametrize("shuffled", [False, True])
def test_streamed_split_writes_the_in_memory_split_byte_for_byte(tmp_path: Path, cap: int, shuffled: bool) -> None:
    prods = _long_tail(5000)
    if shuffled:  # not in _id order: sorted in memory instead, the same result
        prods = prods.sample(frac=1, random_state=1)
    prods.to_parquet(tmp_path / "products.parquet", index=False)
    kw = {"seed": 3, "val_fraction": 0.1, "cap_per_category": cap, "min_products_for_val": 2}
    expected = assign_folds(prods, **kw)
    expected.to_parquet(tmp_path / "in_memory.parquet", index=False)
    stream_folds(tmp_path / "products.parquet", tmp_path / "streamed.parquet", batch_rows=333, **kw)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed.parquet"), expected)
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "in_memory.parquet").read_bytes()


def _val_matches_in_memory(split: pd.DataFrame, duplicates: Path) -> int:
    """The pandas version the streamed count replaced (whole duplicates table, a set of strings)."""
    dup = pd.read_parquet(duplicates, columns=["split", "_id", "md5"])
    dup = dup[dup["split"] == "train"].merge(split[["_id", "fold"]], on="_id")
    train_hashes = set(dup.loc[dup["fold"] == "train", "md5"])
    val = dup[dup["fold"] == "val"]
    return int(val.loc[val["md5"].isin(train_hashes), "_id"].nunique())


@pytest.mark.parametrize("cap", [0, 2])
def test_streamed_val_matches_count_what_the_in_memory_join_counted(tmp_path: Path, cap: int) -> None:
    prods = _long_tail(3000, seed=5)
    split = assign_folds(prods, seed=0, val_fraction=0.2, cap_per_category=cap, min_products_for_val=2)
    split.to_parquet(tmp_path / "split.parquet", index=False)
    rng = np.random.default_rng(2)
    pool = [hashlib.md5(str(i).encode()).hexdigest() for i in range(400)]  # few hashes: many repeats
    train = pd.DataFrame({"split": "train", "_id": rng.choice(prods["_id"], 2500),
                          "md5": rng.choice(pool, 2500)})
    test = pd.DataFrame({"split": "test", "_id": rng.integers(1, 10**6, 500), "md5": rng.choice(pool, 500)})
    pd.concat([train, test]).sample(frac=1, random_state=0).to_parquet(tmp_path / "dup.parquet", index=False)
    expected = _val_matches_in_memory(split, tmp_path / "dup.parquet")
    assert 0 < expected < split["fold"].eq("val").sum()
    assert val_matches(tmp_path / "split.parquet", tmp_path / "dup.parquet", batch_rows=97) == expected
