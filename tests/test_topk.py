import numpy as np
import torch

from cdiscount.topk import ProductAggregator, topk
from conftest import bench_module


def test_product_score_is_mean_image_log_probability_across_batches() -> None:
    torch.manual_seed(0)
    ids = np.array([5, 5, 9, 11, 11, 11])
    logp = torch.log_softmax(torch.randn(6, 8), dim=1)
    agg = ProductAggregator(k=3)
    out = list(agg.add(ids[:4], logp[:4])) + list(agg.add(ids[4:], logp[4:])) + list(agg.flush())
    assert [o[0] for o in out] == [5, 9, 11]
    for pid, idx, prob in out:
        expected = torch.softmax(logp[torch.from_numpy(ids == pid)].mean(0), 0)
        e_idx, e_prob = topk(expected[None], 3)
        assert (idx == e_idx[0]).all() and np.allclose(prob, e_prob[0], atol=1e-6)
    assert out[0][1].dtype == np.int16 and out[0][2].dtype == np.float32


def test_topk_never_exceeds_class_count() -> None:
    idx, prob = topk(torch.tensor([[0.2, 0.8]]), 20)
    assert idx.tolist() == [[1, 0]] and np.allclose(prob, [[0.8, 0.2]])


def _file(tmp_path, rows):
    import pyarrow.parquet as pq

    from cdiscount.topk import product_table

    path = tmp_path / "p.parquet"
    with pq.ParquetWriter(path, product_table([0], [[0]], [[1.0]]).schema) as w:
        for ids, idx, prob in rows:
            w.write_table(product_table(ids, idx, prob))
    return path


def test_streaming_reads_equal_the_in_memory_read(tmp_path) -> None:
    """iter_topk (batches) and read_top1 (top-1 only) give what pandas reads whole, in file order."""
    import pandas as pd

    from cdiscount.topk import iter_topk, read_top1, read_topk

    rng = np.random.default_rng(0)
    ids = rng.permutation(1000)
    idx = rng.integers(0, 50, (1000, 5))
    prob = rng.random((1000, 5)).astype(np.float32)
    path = _file(tmp_path, [(ids[i : i + 300], idx[i : i + 300], prob[i : i + 300]) for i in range(0, 1000, 300)])
    whole = pd.read_parquet(path)
    got = list(iter_topk(path, batch_rows=128))
    assert [len(b[0]) for b in got] == [128] * 7 + [104]
    assert np.array_equal(np.concatenate([b[0] for b in got]), whole["_id"].to_numpy())
    assert np.array_equal(np.concatenate([b[1] for b in got]), np.stack(whole["top_idx"]))
    assert read_top1(path).to_dict() == dict(zip(whole["_id"], [int(r[0]) for r in whole["top_idx"]]))
    want = ids[[3, 500, 999]]
    r_ids, r_idx, r_prob = read_topk(path, want, batch_rows=64)
    assert sorted(r_ids) == sorted(want) and np.allclose(r_prob, prob[np.isin(ids, want)])


def test_floor_densify_and_densify_columns_agree_on_hand_computed_rows() -> None:
    from cdiscount.topk import densify, densify_columns, floor

    idx = np.array([[2, 0, -1], [1, 3, 4]])
    prob = np.array([[0.6, 0.2, 0.0], [0.5, 0.3, 0.1]], dtype=np.float32)
    # row 0 keeps 0.8 over 2 classes: 0.2 left for the 3 others; row 1 keeps 0.9: 0.1 for the 2 others
    np.testing.assert_allclose(floor(idx, prob, 5), [0.2 / 3, 0.05], rtol=1e-6)
    dense = densify(idx, prob, 5)
    np.testing.assert_allclose(dense, [[0.2, 0.2 / 3, 0.6, 0.2 / 3, 0.2 / 3], [0.05, 0.5, 0.05, 0.3, 0.1]],
                               rtol=1e-5)
    cols = densify_columns(idx, prob, np.array([4, 2]), 5)
    np.testing.assert_allclose(cols, [[0.2 / 3, 0.6], [0.1, 0.05]], rtol=1e-6)
    assert cols.dtype == np.float64 and cols.shape == (2, 2)


def test_the_batched_aggregator_is_bit_identical_to_a_running_sum_per_picture() -> None:
    """The batch reduction must not change a single bit of the product scores the old per-picture
    loop wrote (train_backbone's outputs are cached by DVC): products spanning batches included."""
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(300), rng.integers(1, 5, 300))
    logp = torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (len(ids), 50)).astype(np.float32)), dim=1)

    agg = ProductAggregator(k=7)
    got = []
    for b in range(0, len(ids), 37):  # batches cut products in two
        got += list(agg.add(ids[b : b + 37], logp[b : b + 37]))
    got += list(agg.flush())
    want = bench_module("ensemble").loop_aggregate(ids, logp, 7)
    assert [g[0] for g in got] == [w[0] for w in want] == list(range(300))
    for (_, idx, prob), (_, w_idx, w_prob) in zip(got, want):
        assert np.array_equal(idx, w_idx) and np.array_equal(prob, w_prob)
    assert list(agg.add(np.zeros(0, np.int64), logp[:0])) == []
