import numpy as np
import torch

from cdiscount.topk import ProductAggregator, topk


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
