import numpy as np
import pandas as pd
import pytest

from cdiscount.components import Component, candidates, combine, read_component, simplex_grid
from cdiscount.errors import InputError
from cdiscount.topk import read_topk


def test_lookup_uses_the_top_k_value_or_the_row_floor() -> None:
    c = Component("a", np.array([[2, 0, -1]]), np.array([[0.6, 0.2, 0.0]], dtype=np.float32))
    assert np.isclose(c.floor(5)[0], 0.2 / 3)  # 0.2 left over, 3 classes outside the 2 listed
    assert np.allclose(c.lookup(np.array([[0, 1, 2]]), 5), [[0.2, 0.2 / 3, 0.6]])


def test_ragged_top_k_lists_are_padded(tmp_path) -> None:
    frame = pd.DataFrame({"_id": [5, 9], "top_idx": [[1, 2], [3]], "top_prob": [[0.5, 0.4], [0.9]]})
    frame.to_parquet(tmp_path / "p.parquet")
    c = read_component("x", tmp_path / "p.parquet", np.array([9, 5]))
    assert c.idx.tolist() == [[3, -1], [1, 2]] and np.allclose(c.prob[0], [0.9, 0])


def test_candidates_and_means() -> None:
    a = Component("a", np.array([[0, 1]]), np.array([[0.7, 0.3]], dtype=np.float32))
    b = Component("b", np.array([[1, -1]]), np.array([[0.9, 0.0]], dtype=np.float32))
    cand = candidates([a, b])
    assert set(cand[0]) == {0, 1}
    probs = np.stack([a.lookup(cand, 3), b.lookup(cand, 3)])
    geo = combine(np.log(probs), probs, np.array([0.5, 0.5]), "geometric")
    ari = combine(np.log(probs), probs, np.array([0.5, 0.5]), "arithmetic")
    assert cand[0][geo[0].argmax()] == 1 and cand[0][ari[0].argmax()] == 1
    assert cand[0][combine(np.log(probs), probs, np.array([1.0, 0.0]), "geometric")[0].argmax()] == 0
    with pytest.raises(ValueError, match="ensemble.mean"):
        combine(np.log(probs), probs, np.array([1.0, 0.0]), "median")


def test_simplex_grid_covers_the_one_hot_corners() -> None:
    g = simplex_grid(3, 0.5)
    assert len(g) == 6 and np.allclose(g.sum(axis=1), 1)
    assert {tuple(r) for r in g} >= {(1, 0, 0), (0, 1, 0), (0, 0, 1)}


def test_read_component_streams_the_wanted_products_in_the_asked_order(tmp_path) -> None:
    frame = pd.DataFrame({"_id": [5, 9, 2, 7], "top_idx": [[1, 2], [3, 0], [4, 1], [0, 2]],
                          "top_prob": [[0.5, 0.4], [0.9, 0.1], [0.6, 0.2], [0.3, 0.3]]})
    path = tmp_path / "preds.parquet"
    frame.to_parquet(path, row_group_size=2)
    ids, idx, prob = read_topk(path, np.array([7, 9]), batch_rows=1)
    assert ids.tolist() == [9, 7] and idx.tolist() == [[3, 0], [0, 2]] and idx.dtype == np.int64
    c = read_component("x", path, np.array([7, 5, 2]))
    assert c.idx.tolist() == [[0, 2], [1, 2], [4, 1]] and np.allclose(c.prob[1], [0.5, 0.4])
    with pytest.raises(InputError, match=r"preds.parquet: component 'x': 1 products .* \[8\]"):
        read_component("x", path, np.array([5, 8]))


def test_a_stream_hands_out_the_same_rows_as_reading_the_file_and_checks_the_order(tmp_path) -> None:
    from cdiscount.components import ComponentStream
    from cdiscount.errors import InputError
    from cdiscount.topk import product_table, writer

    rng = np.random.default_rng(0)
    ids = rng.permutation(10_000)[:100]
    idx = np.stack([rng.permutation(30)[:5] for _ in ids])
    prob = rng.random((100, 5)).astype(np.float32)
    with writer(tmp_path / "c.parquet") as w:
        for b in range(0, 100, 30):  # row groups that do not line up with the chunks below
            w.write_table(product_table(ids[b : b + 30], idx[b : b + 30], prob[b : b + 30]))
    whole = read_component("c", tmp_path / "c.parquet", ids)
    stream = ComponentStream("c", tmp_path / "c.parquet", batch_rows=17)
    parts = [stream.take(ids[b : b + 23]) for b in range(0, 100, 23)]
    stream.finish()
    assert np.array_equal(np.concatenate([p.idx for p in parts]), whole.idx)
    assert np.array_equal(np.concatenate([p.prob for p in parts]), whole.prob)
    swapped = ComponentStream("c", tmp_path / "c.parquet", batch_rows=17)
    with pytest.raises(InputError, match=f"no row for product _id {ids[2]} where expected"):
        swapped.take(ids[[0, 2, 1]])
    short = ComponentStream("c", tmp_path / "c.parquet")
    short.take(ids[:99])
    with pytest.raises(InputError, match="rows left after the last product"):
        short.finish()
