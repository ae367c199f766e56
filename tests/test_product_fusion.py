import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import config
from cdiscount.product_fusion import FusionConfig, FusionHead, ProductFeatures, predict_fusion, train_fusion


def _products(tmp_path, n=600, d=16, k=4, seed=0):
    """Products of 1-4 pictures; only ONE picture (at a random place) shows the class, the others
    are noise shared by all classes: mean-of-pictures dilutes it, max pooling finds it."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, size=(k, d)) * 3
    counts = rng.integers(1, 5, size=n)
    y = rng.integers(0, k, size=n)
    rows, ids = [], []
    for p, (c, label) in enumerate(zip(counts, y)):
        pics = rng.normal(0, 1, size=(c, d))
        pics[rng.integers(c)] += centers[label]
        rows.append(pics)
        ids += [1000 + p] * c
    feats = np.concatenate(rows).astype(np.float16)
    np.save(tmp_path / "shard-0000.npy", feats)
    pd.DataFrame({"_id": ids, "img_idx": np.concatenate([np.arange(c) for c in counts]), "shard": 0,
                  "row": np.arange(len(feats))}).to_parquet(tmp_path / "index.parquet")
    return ProductFeatures.open(tmp_path), y, k


@pytest.mark.parametrize("pooling", ["meanmax", "attention"])
def test_the_head_learns_from_the_one_informative_picture(tmp_path, pooling) -> None:
    feats, y, k = _products(tmp_path)
    cfg = config(FusionConfig, pooling=pooling, hidden=64, epochs=12, batch_size=64, lr=0.01, dropout=0.0)
    rows = np.arange(len(y))
    model = train_fusion(feats, rows[:450], y[:450], k, cfg, progress=False)
    predict_fusion(model, feats, rows[450:], tmp_path / "val.parquet", top_k=3, progress=False)
    out = pd.read_parquet(tmp_path / "val.parquet")
    assert out["_id"].tolist() == feats.ids[450:].tolist()
    top1 = np.array([a[0] for a in out["top_idx"]])
    assert (top1 == y[450:]).mean() > 0.85
    assert all(len(a) == 3 and a[0] >= a[1] for a in out["top_prob"])


def test_padding_does_not_change_the_prediction() -> None:
    torch.manual_seed(0)
    head = FusionHead(8, 5, config(FusionConfig, hidden=16, pooling="attention")).eval()
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    noisy = x.clone()
    noisy[~mask] = 1e3
    with torch.no_grad():
        assert torch.allclose(head(x, mask), head(noisy, mask), atol=1e-5)


def test_unknown_pooling_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"fusion.pooling = 'sum': expected 'meanmax' \| 'attention'"):
        FusionHead(8, 5, config(FusionConfig, pooling="sum"))
