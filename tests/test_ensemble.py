import numpy as np
import pytest

from cdiscount.components import Component
from conftest import bench_module
from cdiscount.ensemble import _topk_unique, candidate_probs, fit_weights


def _component(name, true, acc, rng, n_classes=6):
    """Top-2 rows whose first class is right with probability ``acc``."""
    n = len(true)
    right = rng.random(n) < acc
    first = np.where(right, true, (true + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
    second = (first + 1) % n_classes
    return Component(name, np.stack([first, second], 1), np.tile([[0.6, 0.3]], (n, 1)).astype(np.float32))


def test_weights_favour_the_better_component_and_never_lose_to_it() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, 400)
    comps = [_component("weak", true, 0.3, rng), _component("strong", true, 0.8, rng)]
    cand, probs = candidate_probs(comps, 6)
    w, acc = fit_weights(probs, cand, true, "geometric", 0.1)
    assert w[1] > w[0]
    assert acc >= max(float((c.idx[:, 0] == true).mean()) for c in comps)


def test_topk_unique_lists_each_class_once() -> None:
    cand = np.array([[3, 1, 3, 2]])
    score = np.array([[0.0, -1.0, 0.0, -2.0]])
    idx, prob = _topk_unique(cand, score, 3)
    assert idx[0].tolist() == [3, 1, 2] and np.isclose(prob.sum(), 1) and prob[0, 0] > prob[0, 1]


def test_a_uniform_component_does_not_win_a_tie() -> None:
    rng = np.random.default_rng(1)
    true = rng.integers(0, 6, 50)
    model = _component("model", true, 0.6, rng)
    uniform = Component("vote", np.full((50, 1), -1), np.zeros((50, 1), dtype=np.float32))
    cand, probs = candidate_probs([model, uniform], 6)
    w, _ = fit_weights(probs, cand, true, "geometric", 0.5)
    assert w[0] == 1.0


def test_ties_keep_the_candidate_order() -> None:
    idx, _ = _topk_unique(np.array([[4, 2, 9]]), np.array([[0.0, 0.0, -1.0]]), 2)
    assert idx[0].tolist() == [4, 2]


def test_validation_votes_come_from_the_training_fold_only(tmp_path) -> None:
    """The leakage guard: a validation product sharing a picture with another validation product (or
    only with itself) gets no vote; one sharing it with a training product gets that product's vote."""
    import pandas as pd

    from cdiscount.ensemble import EnsembleConfig, _votes
    from conftest import config

    dup = pd.DataFrame({"split": ["train", "train", "train", "train", "test"],
                        "_id": [1, 2, 3, 4, 9], "md5": ["a", "a", "b", "b", "a"],
                        "category_id": [10, 20, 30, 30, 0]})
    #   product 1 (train, cat 10) and 2 (val, cat 20) share "a"; 3 and 4 (both val) share "b"
    dup.to_parquet(tmp_path / "duplicates.parquet")
    pd.DataFrame({"md5": ["a", "b"], "is_blank": [False, False]}).to_parquet(tmp_path / "hashes.parquet")
    val = pd.DataFrame({"_id": [2, 3, 4], "category_id": [20, 30, 30]})
    votes = _votes(config(EnsembleConfig), val, tmp_path)
    assert votes["val"].label.to_dict() == {2: 10}  # 3 and 4 would vote for each other: leakage
    assert votes["test"].label.to_dict() == {}  # "a" spans categories 10 and 20 in train: a placeholder
    assert sorted(votes["test"].table["category_id"]) == []


@pytest.mark.parametrize("mean", ["geometric", "arithmetic"])
@pytest.mark.parametrize("n", [7, 300])
def test_the_batched_grid_fit_picks_what_the_plain_loop_picks(mean: str, n: int) -> None:
    rng = np.random.default_rng(n)
    comps = []
    for m in range(3):
        idx = np.stack([rng.permutation(12)[:4] for _ in range(n)])
        comps.append(Component(f"c{m}", idx, np.sort(rng.dirichlet(np.ones(4), n), axis=1)[:, ::-1] * 0.8))
    true = np.where(rng.random(n) < 0.6, comps[0].idx[:, 0], comps[1].idx[:, 0])
    cand, probs = candidate_probs(comps, 12)
    want_w, want_acc = bench_module("ensemble").plain_fit(probs, cand, true, mean, 0.1)
    got_w, got_acc = fit_weights(probs, cand, true, mean, 0.1, batch=5)  # batches that split the grid unevenly
    assert got_acc == pytest.approx(want_acc) and np.allclose(got_w, want_w)


def test_lookup_by_sorted_keys_equals_the_pairwise_comparison() -> None:
    rng = np.random.default_rng(3)
    idx = np.stack([rng.permutation(50)[:6] for _ in range(40)])
    idx[::5, 3:] = -1  # padded rows
    prob = np.where(idx >= 0, rng.random(idx.shape) / 6, 0).astype(np.float32)
    comp = Component("c", idx, prob)
    cand = rng.integers(0, 50, (40, 15))
    cand[:, :3] = idx[:, :3]
    assert np.allclose(comp.lookup(cand, 50), bench_module("ensemble").pairwise_lookup(comp, cand, 50))


def test_the_backbone_component_stands_for_every_backbone_entry() -> None:
    import pytest

    from cdiscount.ensemble import component_paths, expand_components
    from cdiscount.errors import ConfigError

    assert expand_components(["backbone", "fusion"], ["main", "s96"]) == ["backbone/main", "backbone/s96", "fusion"]
    assert expand_components(["backbone/s96", "ocr"], ["main", "s96"]) == ["backbone/s96", "ocr"]
    assert expand_components(["backbone", "backbone/main"], ["main"]) == ["backbone/main"]
    assert expand_components(["fusion"], ["main"]) == ["fusion"]  # a backbone left out of the mix on purpose
    with pytest.raises(ConfigError, match="'backbone/old' is not a backbone entry"):
        expand_components(["backbone/old"], ["main"])
    from pathlib import Path

    assert component_paths(Path("p"), "backbone/s96")["val"] == Path("p/backbone/s96/train_products.parquet")


def _write_topk(path, ids, top, n_classes=6):
    import numpy as np

    from cdiscount.topk import product_table
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    idx = np.stack([top, (top + 1) % n_classes], 1).astype(np.int16)
    pq.write_table(product_table(ids, idx, np.tile([[0.7, 0.2]], (len(ids), 1)).astype(np.float32)), path)


def test_two_backbones_are_two_weighted_components_and_a_removed_one_is_left_out(tmp_path, caplog) -> None:
    """Each backbone entry is a component with its weight; a folder of a removed entry is not read."""
    import json

    import pandas as pd

    from cdiscount.ensemble import EnsembleConfig, run_ensemble
    from conftest import config

    rng = np.random.default_rng(3)
    n, n_classes = 200, 6
    tax = pd.DataFrame({"category_id": np.arange(100, 100 + n_classes), "idx": np.arange(n_classes)})
    tax.to_parquet(tmp_path / "taxonomy.parquet")
    true = rng.integers(0, n_classes, n)
    pd.DataFrame({"_id": np.arange(n), "category_id": true + 100, "fold": "val"}).to_parquet(tmp_path / "split.parquet")
    pd.DataFrame({"_id": np.arange(1000, 1010)}).to_parquet(tmp_path / "test.parquet")
    (tmp_path / "dedup").mkdir()
    pd.DataFrame({"split": pd.Series(dtype=str), "_id": pd.Series(dtype="int64"), "md5": pd.Series(dtype=str),
                  "category_id": pd.Series(dtype="int64")}).to_parquet(tmp_path / "dedup/duplicates.parquet")
    pd.DataFrame({"md5": pd.Series(dtype=str), "is_blank": pd.Series(dtype=bool)}).to_parquet(
        tmp_path / "dedup/hashes.parquet")
    preds = tmp_path / "preds"
    for name, acc in (("main", 0.6), ("s96", 0.55), ("old", 0.9)):
        right = rng.random(n) < acc
        top = np.where(right, true, (true + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
        _write_topk(preds / "backbone" / name / "train_products.parquet", np.arange(n), top)
        _write_topk(preds / "backbone" / name / "test_products.parquet", np.arange(1000, 1010),
                    rng.integers(0, n_classes, 10))
    cfg = config(EnsembleConfig, components=["backbone", "fusion"], dedup_blend=False, override=False)
    kw = dict(taxonomy=tmp_path / "taxonomy.parquet", test_products=tmp_path / "test.parquet",
              split_path=tmp_path / "split.parquet", dedup=tmp_path / "dedup", preds=preds, progress=False)
    m = run_ensemble(cfg, out_dir=tmp_path / "out", metrics_path=tmp_path / "m.json", backbones=["main", "s96"], **kw)
    assert set(m["weights"]) == set(m["components"]) == {"backbone/main", "backbone/s96"}  # no fusion here
    assert m["fitted_product_accuracy"] >= m["fitted_best_component_accuracy"] == max(m["components"].values())
    assert 0 < m["product_accuracy_cross_fitted"] <= 1
    assert json.loads((tmp_path / "m.json").read_text())["weights"] == m["weights"]
    assert "['old'] are not in backbones.entries" in caplog.text
    one = run_ensemble(cfg, out_dir=tmp_path / "out", metrics_path=tmp_path / "m.json", backbones=["main"], **kw)
    assert set(one["components"]) == {"backbone/main"}


def test_streamed_validation_gives_what_the_whole_fold_in_memory_gives(tmp_path, caplog, monkeypatch) -> None:
    """Validation components read a chunk at a time (files in split order) and the same files read whole
    (one shuffled file forces that) give the same weights, metrics and bytes, whatever the chunk size;
    votes and the override take part (duplicated pictures between the folds and with test)."""
    import hashlib
    import json

    import pandas as pd

    from cdiscount.ensemble import EnsembleConfig, run_ensemble
    from conftest import config

    rng = np.random.default_rng(8)
    n, n_test, n_classes = 300, 40, 7
    tax = pd.DataFrame({"category_id": np.arange(100, 100 + n_classes), "idx": np.arange(n_classes)})
    tax.to_parquet(tmp_path / "taxonomy.parquet")
    true = rng.integers(0, n_classes, n)
    fold = pd.Categorical(np.where(rng.random(n) < 0.4, "val", "train"), categories=["train", "val", "unused"])
    pd.DataFrame({"_id": np.arange(n), "category_id": true + 100, "fold": fold}).to_parquet(tmp_path / "split.parquet")
    test_ids = np.arange(1000, 1000 + n_test)
    pd.DataFrame({"_id": test_ids}).to_parquet(tmp_path / "test.parquet")
    (tmp_path / "dedup").mkdir()
    pool = [hashlib.md5(str(i).encode()).hexdigest() for i in range(60)]
    pics = rng.integers(0, n, 250)
    dup = pd.DataFrame({"split": ["train"] * 250 + ["test"] * 30, "_id": np.r_[pics, rng.choice(test_ids, 30)],
                        "md5": [pool[i] for i in rng.integers(0, 60, 280)],
                        "category_id": np.r_[true[pics] + 100, np.zeros(30, int)]})
    dup.to_parquet(tmp_path / "dedup/duplicates.parquet")
    pd.DataFrame({"md5": pool, "is_blank": [i == 3 for i in range(60)]}).to_parquet(tmp_path / "dedup/hashes.parquet")
    preds = tmp_path / "preds"
    val_ids = np.flatnonzero(np.asarray(fold) == "val")
    for name, acc, path, ids in (("backbone/main", 0.6, "train_products", np.arange(n)),
                                 ("fusion", 0.7, "val_products", val_ids)):
        right = rng.random(len(ids)) < acc
        top = np.where(right, true[ids], (true[ids] + 1 + rng.integers(0, n_classes - 1, len(ids))) % n_classes)
        _write_topk(preds / name / f"{path}.parquet", ids, top)
        _write_topk(preds / name / "test_products.parquet", test_ids, rng.integers(0, n_classes, n_test))
    kw = dict(taxonomy=tmp_path / "taxonomy.parquet", test_products=tmp_path / "test.parquet",
              split_path=tmp_path / "split.parquet", dedup=tmp_path / "dedup", preds=preds, progress=False,
              backbones=["main"])

    def run(out: str, chunk: int) -> tuple[dict, dict[str, bytes]]:
        cfg = config(EnsembleConfig, components=["backbone", "fusion"], chunk=chunk, fit_products=70)
        m = run_ensemble(cfg, out_dir=tmp_path / out, metrics_path=tmp_path / f"{out}.json", **kw)
        return m, {p.name: p.read_bytes() for p in sorted((tmp_path / out).glob("*.parquet"))}

    def tables(out: str) -> dict[str, pd.DataFrame]:
        return {p.name: pd.read_parquet(p) for p in sorted((tmp_path / out).glob("*.parquet"))}

    import cdiscount.ensemble as ensemble

    whole = ensemble.read_component
    monkeypatch.setattr(ensemble, "read_component", lambda *a: pytest.fail("read a validation file whole"))
    streamed, files = run("a", chunk=9)
    monkeypatch.setattr(ensemble, "read_component", whole)
    assert streamed["override_products"] > 0 and streamed["weights"]["dedup_vote"] >= 0
    assert "read whole" not in caplog.text
    assert run("b", chunk=10_000)[0] == streamed  # one chunk: the same numbers (row groups differ)
    for name, table in tables("a").items():
        pd.testing.assert_frame_equal(table, tables("b")[name])
    fusion = pd.read_parquet(preds / "fusion/val_products.parquet")
    fusion.sample(frac=1, random_state=0).to_parquet(preds / "fusion/val_products.parquet", index=False)
    held, held_files = run("c", chunk=9)
    assert "['fusion'] do not follow split.parquet's order: read whole" in caplog.text
    assert json.dumps(held, sort_keys=True) == json.dumps(streamed, sort_keys=True) and held_files == files


def test_the_grid_fit_scratch_is_bounded_whatever_the_fitted_products(monkeypatch) -> None:
    """The fit's scratch follows ``FIT_SCRATCH_BYTES``, not ``batch`` x products: a fixed batch of 8
    vectors needs about 1.3 GB at 50,000 products (memory that grew with ``ensemble.fit_products``)."""
    import tracemalloc

    from cdiscount import ensemble

    rng = np.random.default_rng(5)
    n, k = 8000, 10
    comps = [Component(f"c{m}", np.stack([rng.permutation(40)[:k] for _ in range(n)]),
                       np.sort(rng.dirichlet(np.ones(k), n), axis=1)[:, ::-1].astype(np.float32)) for m in range(3)]
    true = comps[0].idx[:, 0].copy()
    cand, probs = candidate_probs(comps, 40)
    want = fit_weights(probs, cand, true, "geometric", 0.1)
    monkeypatch.setattr(ensemble, "FIT_SCRATCH_BYTES", 1 << 20, raising=False)
    tracemalloc.start()
    got = fit_weights(probs, cand, true, "geometric", 0.1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.allclose(got[0], want[0]) and got[1] == pytest.approx(want[1])
    # the log-probabilities (one copy of probs) and one vector's [N, U] float64 scratch, a few times over
    assert peak < probs.nbytes + 6 * cand.size * 8, (peak, probs.nbytes)


def test_the_fit_holds_one_source_not_probabilities_logs_and_copies(monkeypatch) -> None:
    """``_fit`` writes the logs over the probabilities and fits the models alone on a view: its peak is
    one [M, N, U] source plus bounded scratch (at weight_step 0.1: 3.24 sources with ``np.stack`` of the
    lookups, the logs beside the probabilities and a copy of both for the models-alone fit, 2.72 now;
    2.60 at the 0.25 used here)."""
    import tracemalloc

    from cdiscount import ensemble
    from conftest import config

    rng = np.random.default_rng(5)
    n, k, m = 3000, 20, 7
    comps = [Component(f"c{j}", np.stack([rng.permutation(60)[:k] for _ in range(n)]),
                       np.sort(rng.dirichlet(np.ones(k), n), axis=1)[:, ::-1].astype(np.float32)) for j in range(m)]
    true = comps[0].idx[:, 0].copy()
    cfg = config(ensemble.EnsembleConfig, chunk=500, weight_step=0.25)
    source_bytes = m * n * (m * k) * 4
    cand, probs = candidate_probs(comps, 60)
    want_w = fit_weights(probs, cand, true, cfg.mean, cfg.weight_step)[0]
    want_alone = fit_weights(probs[: m - 1], cand, true, cfg.mean, cfg.weight_step)[0]
    del cand, probs
    monkeypatch.setattr(ensemble, "FIT_SCRATCH_BYTES", 1 << 16)
    tracemalloc.start()
    weights, _, cv, alone, _ = ensemble._fit(comps, true, m - 1, cfg, 60, np.random.default_rng(0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.allclose(weights, want_w) and np.allclose(alone[: m - 1], want_alone) and alone[-1] == 0
    assert 0 < cv <= 1 and comps == []  # the components were let go once looked up
    assert peak < 3.0 * source_bytes, peak / source_bytes
