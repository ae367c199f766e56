import hashlib

import numpy as np
import pandas as pd
import pytest

from cdiscount.lookup import product_votes, vote_component


def test_only_unambiguous_non_placeholder_matches_are_trusted() -> None:
    reference = pd.DataFrame({
        "md5": ["a", "a", "b", "p", "p", "c", "d", "w"],
        "category_id": [10, 10, 20, 10, 30, 30, 40, 50],
    })
    query = pd.DataFrame({
        "_id": [1, 2, 2, 3, 4, 4, 5],
        "md5": ["a", "a", "b", "p", "c", "d", "w"],
    })
    v = product_votes(query, reference, placeholder_min_categories=2, blank_md5={"w"}, min_votes=1)
    assert v.label.to_dict() == {1: 10}  # 2: two categories; 3: placeholder; 4: two; 5: blank
    assert set(v.table["_id"]) == {1, 2, 4}
    assert v.table.query("_id == 1")["votes"].item() == 2
    assert product_votes(query, reference, placeholder_min_categories=2, blank_md5=set(), min_votes=3).label.empty


def test_vote_component_is_uniform_without_a_match() -> None:
    reference = pd.DataFrame({"md5": ["a", "b"], "category_id": [10, 20]})
    query = pd.DataFrame({"_id": [1, 1], "md5": ["a", "b"]})
    v = product_votes(query, reference, placeholder_min_categories=2, blank_md5=set(), min_votes=1)
    idx_of = pd.Series({10: 0, 20: 1, 30: 2})
    c = vote_component(v, np.array([7, 1]), idx_of, smoothing=0.1)
    assert (c.idx[0] == -1).all() and np.isclose(c.floor(3)[0], 1 / 3)
    assert sorted(c.idx[1].tolist()) == [0, 1] and np.allclose(c.prob[1], [0.45, 0.45])


def _votes_in_memory(dedup, val_ids, placeholder_min_categories, min_votes):
    """The whole-table version the partitioned one replaced (ensemble._votes before issue 11)."""
    dup = pd.read_parquet(dedup / "duplicates.parquet", columns=["split", "_id", "md5", "category_id"])
    hashes = pd.read_parquet(dedup / "hashes.parquet", columns=["md5", "is_blank"])
    blank = frozenset(hashes.loc[hashes["is_blank"], "md5"])
    train = dup[dup["split"] == "train"]
    in_val = train["_id"].isin(val_ids)
    kw = {"placeholder_min_categories": placeholder_min_categories, "blank_md5": blank, "min_votes": min_votes}
    return {"val": product_votes(train[in_val], train[~in_val], **kw),
            "test": product_votes(dup[dup["split"] == "test"], train, **kw)}


@pytest.mark.parametrize("hex_md5", [True, False])
@pytest.mark.parametrize("rows_per_part", [7, 10**6])
def test_partitioned_votes_equal_the_whole_table_votes(tmp_path, monkeypatch, hex_md5: bool,
                                                       rows_per_part: int) -> None:
    import cdiscount.lookup as lookup
    from cdiscount.lookup import votes_from_dedup

    rng = np.random.default_rng(4)
    pool = [hashlib.md5(str(i).encode()).hexdigest() if hex_md5 else f"h{i}" for i in range(120)]
    n_train, n_test = 1500, 400
    train_ids = rng.integers(1, 600, n_train)
    cat_of = rng.choice([10, 20, 30, 40], 600, p=[0.6, 0.2, 0.1, 0.1])
    dup = pd.DataFrame({"split": ["train"] * n_train + ["test"] * n_test,
                        "_id": np.r_[train_ids, rng.integers(10_000, 10_300, n_test)],
                        "md5": rng.choice(pool, n_train + n_test),
                        "category_id": np.r_[cat_of[train_ids], np.zeros(n_test, int)]})
    dup.to_parquet(tmp_path / "duplicates.parquet", index=False)
    pd.DataFrame({"md5": pool, "is_blank": [i % 17 == 0 for i in range(len(pool))]}).to_parquet(
        tmp_path / "hashes.parquet", index=False)
    val_ids = np.unique(rng.choice(train_ids, 200))
    monkeypatch.setattr(lookup, "PARTITION_ROWS", rows_per_part)
    for pmc, mv in ((2, 1), (3, 2)):
        got = votes_from_dedup(tmp_path, val_ids, placeholder_min_categories=pmc, min_votes=mv, batch_rows=111)
        want = _votes_in_memory(tmp_path, val_ids, pmc, mv)
        for k in ("val", "test"):
            pd.testing.assert_frame_equal(got[k].table, want[k].table)
            pd.testing.assert_series_equal(got[k].label, want[k].label)
        assert len(want["val"].label) and len(want["test"].label)  # the data exercise both


def test_a_hash_partitioned_table_is_read_by_row_group_without_partitioning_again(tmp_path, monkeypatch) -> None:
    """dedup writes duplicates.parquet one hash partition per row group and says so: the votes then come
    from its row groups as they are (the second partitioning pass is never run) and equal the whole-table
    votes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import cdiscount.lookup as lookup
    from cdiscount.lookup import votes_from_dedup
    from cdiscount.partitioned_parquet import marked

    rng = np.random.default_rng(5)
    pool = [hashlib.md5(str(i).encode()).hexdigest() for i in range(80)]
    n_train, n_test = 900, 300
    train_ids = rng.integers(1, 400, n_train)
    cat_of = rng.choice([10, 20, 30], 400, p=[0.7, 0.2, 0.1])
    dup = pd.DataFrame({"split": ["train"] * n_train + ["test"] * n_test,
                        "_id": np.r_[train_ids, rng.integers(10_000, 10_200, n_test)],
                        "md5": rng.choice(pool, n_train + n_test),
                        "category_id": np.r_[cat_of[train_ids], np.zeros(n_test, int)]})
    table = pa.Table.from_pandas(dup, preserve_index=False)
    with pq.ParquetWriter(tmp_path / "duplicates.parquet", marked(table.schema)) as w:
        part = dup["md5"].str[0]
        for p in sorted(set(part)):  # 16 partitions by the first hex digit, a row group each
            rows = table.filter(pa.array((part == p).to_numpy()))
            w.write_table(rows, row_group_size=rows.num_rows)
    pd.DataFrame({"md5": pool, "is_blank": [i % 13 == 0 for i in range(len(pool))]}).to_parquet(
        tmp_path / "hashes.parquet", index=False)
    val_ids = np.unique(rng.choice(train_ids, 120))
    want = _votes_in_memory(tmp_path, val_ids, 2, 1)
    monkeypatch.setattr(lookup, "_partition_of", lambda *a: pytest.fail("partitioned a second time"))
    got = votes_from_dedup(tmp_path, val_ids, placeholder_min_categories=2, min_votes=1)
    for k in ("val", "test"):
        pd.testing.assert_frame_equal(got[k].table, want[k].table)
        pd.testing.assert_series_equal(got[k].label, want[k].label)
    assert len(want["val"].label) and len(want["test"].label)
