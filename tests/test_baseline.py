from pathlib import Path

import numpy as np
import pandas as pd

from cdiscount.baseline import BaselineConfig, _multi_index, nearest, phash64, run_baseline
from conftest import PARAMS, config
from cdiscount.split import assign_folds


def test_multi_index_agrees_with_brute_force_within_radius() -> None:
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2**63, size=3000, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(b) for b in rng.integers(0, 64, size=(200, 3))]
    queries = np.array([refs[i * 7] ^ f[0] ^ (f[1] if i % 2 else np.uint64(0)) for i, f in enumerate(flips)],
                       dtype=np.uint64)
    queries = np.concatenate([queries, rng.integers(0, 2**63, size=50, dtype=np.uint64)])  # far from all
    b_idx, b_dist = nearest(queries, refs, brute_force_pairs=PARAMS["baseline"]["brute_force_pairs"])
    m_idx, m_dist = _multi_index(queries, refs)
    close = b_dist <= 3
    assert close[:200].all()
    assert (m_idx[close] == b_idx[close]).all() and (m_dist[close] == b_dist[close]).all()
    assert (m_idx[~close] == -1).all()
    big_idx, _ = nearest(queries, refs, brute_force_pairs=10)  # over budget: the band index
    assert (big_idx == m_idx).all()


def test_baseline_on_the_sample_beats_chance(tiny_interim: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.parquet"
    assign_folds(pd.read_parquet(tiny_interim / "train_products.parquet"), seed=0, val_fraction=0.2,
                 cap_per_category=0, min_products_for_val=2).to_parquet(split)
    m = run_baseline(tiny_interim, split, tmp_path / "baseline.json", config(BaselineConfig, workers=1),
                     progress=False)
    majority = pd.read_parquet(split).query("fold == 'val'")["category_id"].value_counts(normalize=True).iloc[0]
    assert m["product_accuracy"] > majority
    assert 0 < m["exact_match_rate"] < 1
    assert (tmp_path / "baseline.json").exists()


def test_phash_is_stable_for_identical_bytes(tiny_interim: Path) -> None:
    from cdiscount.bson_io import open_store

    store = open_store(tiny_interim, "train")
    assert phash64(store.read_row(0)) == phash64(store.read_row(0))
