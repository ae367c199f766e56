"""The specific stage's library: groups dealt to slots, capped training sets, streamed top-K outputs."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscount.experts import ExpertConfig
from cdiscount.specific import capped, ordered_groups, run_specific, slot_groups
from cdiscount.topk import product_table, read_topk, writer
from conftest import config


def test_every_group_is_dealt_to_exactly_one_slot_whatever_the_count() -> None:
    slots = ["g0", "g1", "g2"]
    for n in (0, 2, 3, 7, 49):
        names = [f"group {i}" for i in range(n)]
        dealt = [rank for s in slots for rank, _ in slot_groups(names, slots, s)]
        assert sorted(dealt) == list(range(n))  # none dropped, none twice
    assert slot_groups([f"n{i}" for i in range(7)], slots, "g1") == [(1, "n1"), (4, "n4")]
    assert ordered_groups({"b": [1, 2], "a": [3, 4], "c": [5, 6, 7]}) == ["c", "a", "b"]


def test_cap_keeps_at_most_cap_rows_per_label_in_order_and_is_seeded() -> None:
    rows = np.arange(100, 130)
    labels = np.array([0] * 20 + [1] * 3 + [2] * 7)
    got = capped(rows, labels, 5, seed=0)
    assert np.bincount(labels[got - 100]).tolist() == [5, 3, 5]
    assert (np.diff(got) > 0).all() and set(got) <= set(rows)
    assert np.array_equal(got, capped(rows, labels, 5, seed=0))
    assert not np.array_equal(got, capped(rows, labels, 5, seed=1))
    assert np.array_equal(capped(rows, labels, 0, seed=0), rows)  # 0 = no cap


def test_experts_keep_their_top_k_as_a_full_sort_would() -> None:
    """The experts' top-K is topk.topk (the one every stage uses) on their [products, group] rows."""
    import torch

    from cdiscount.topk import topk

    probs = np.random.default_rng(0).random((50, 30))
    idx, val = topk(torch.from_numpy(probs), 7)
    want = np.argsort(-probs, axis=1)[:, :7]
    assert np.array_equal(idx, want) and np.array_equal(val, np.take_along_axis(probs, want, axis=1).astype(np.float32))
    assert topk(torch.from_numpy(probs), 40)[0].shape == (50, 30)  # k beyond the classes: all, best first


def _inputs(tmp: Path, n_groups: int) -> dict:
    """Ten categories in ``n_groups`` groups, 120 train products (one or two pictures, features that
    separate the categories), 30 test products, and flat top-K files putting mass on every group."""
    rng = np.random.default_rng(0)
    cats = np.arange(1000, 1010)
    pd.DataFrame({"category_id": cats, "idx": np.arange(10)}).to_parquet(tmp / "tax.parquet")
    groups = {f"group {j}": cats[j::n_groups].tolist() for j in range(n_groups)}
    (tmp / "groups.json").write_text(json.dumps(groups))
    centers = rng.normal(0, 4, (10, 6))
    feats, index, products = [], [], {}
    for split, n in (("train", 120), ("test", 30)):
        ids = np.arange(n) + (0 if split == "train" else 10_000)
        label = rng.integers(0, 10, n)
        pics = rng.integers(1, 3, n)
        pid = np.repeat(ids, pics)
        x = centers[np.repeat(label, pics)] + rng.normal(0, 0.5, (len(pid), 6))
        (tmp / "features" / split).mkdir(parents=True)
        np.save(tmp / "features" / split / "shard-000.npy", x.astype(np.float16))
        pd.DataFrame({"_id": pid, "img_idx": np.concatenate([np.arange(k) for k in pics]), "shard": 0,
                      "row": np.arange(len(pid))}).to_parquet(tmp / "features" / split / "index.parquet")
        if split == "train":
            pd.DataFrame({"_id": pid, "category_id": cats[np.repeat(label, pics)]}).to_parquet(tmp / "images.parquet")
            pd.DataFrame({"_id": ids, "category_id": cats[label], "fold": np.where(ids % 4 == 0, "val", "train")}
                         ).to_parquet(tmp / "split.parquet")
        top = np.stack([rng.permutation(10)[:4] for _ in ids])
        (tmp / "flat").mkdir(exist_ok=True)
        with writer(tmp / "flat" / f"{split}_products.parquet") as w:
            w.write_table(product_table(ids, top, np.tile([0.4, 0.3, 0.2, 0.1], (n, 1))))
        products[split] = ids
    return {"groups": groups, "products": products}


@pytest.mark.parametrize("n_groups", [2, 5])
def test_a_slot_trains_each_of_its_groups_and_writes_top_k_in_flat_order(tmp_path: Path, n_groups: int) -> None:
    made = _inputs(tmp_path, n_groups)
    slots = ["g0", "g1"]  # fewer slots than groups when n_groups = 5
    cfg = config(ExpertConfig, model="logreg", top_k=2, cap_per_category=4, min_mass=0.05)
    trained = []
    for slot in slots:
        meta = run_specific(slot, slots, cfg, groups_path=tmp_path / "groups.json", taxonomy=tmp_path / "tax.parquet",
                            train_images=tmp_path / "images.parquet", split_path=tmp_path / "split.parquet",
                            features=tmp_path / "features", flat=tmp_path / "flat", out=tmp_path / "specific" / slot)
        trained += [g["group"] for g in meta["groups"]]
        for g in meta["groups"]:
            d = tmp_path / "specific" / slot / f"{g['rank']:03d}"
            assert json.loads((d / "meta.json").read_text())["group"] == g["group"]
            assert g["train_pictures"] <= 4 * len(made["groups"][g["group"]]) < g["train_pictures_available"]
            classes = np.asarray(g["classes"])
            for split, source in (("val", "train"), ("test", "test")):
                ids, idx, prob = read_topk(d / f"{split}_products.parquet")
                assert len(ids) == g[f"{split}_products_scored"] > 0
                flat_ids = read_topk(tmp_path / "flat" / f"{source}_products.parquet")[0]
                assert (np.diff(pd.Index(flat_ids).get_indexer(ids)) > 0).all()  # the flat file's order
                assert idx.shape[1] == 2 and np.isin(idx, classes).all() and (prob[:, 0] >= prob[:, 1]).all()
    assert sorted(trained) == sorted(made["groups"])  # every group has its expert


def test_scoring_batches_shrink_with_the_group_so_memory_does_not_grow_with_it() -> None:
    from cdiscount.specific import BATCH_CELLS, BATCH_PRODUCTS, batch_products

    assert batch_products(5) == BATCH_PRODUCTS  # small groups: the feature-bound batch
    assert batch_products(5000) * 5000 <= BATCH_CELLS < batch_products(5000) * 5000 * 1.01
    assert batch_products(10**9) == 256
