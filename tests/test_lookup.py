import numpy as np
import pandas as pd

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
