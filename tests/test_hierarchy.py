import numpy as np
import pandas as pd

from cdiscount.hierarchy import ExpertOutput, route_chunk
from cdiscount.topk import densify, densify_columns, product_table, writer


def test_densify_keeps_the_top_k_and_spreads_the_rest() -> None:
    out = densify([[2, 0], [1, 3]], [[0.6, 0.2], [0.5, 0.5]], n_classes=4)
    assert np.allclose(out.sum(axis=1), 1)
    assert np.allclose(out[0], [0.2, 0.1, 0.6, 0.1]) and np.allclose(out[1], [0, 0.5, 0, 0.5])
    assert densify([], [], 4).shape == (0, 4)


def test_routing_moves_mass_only_inside_the_group_and_only_for_scored_products() -> None:
    flat = np.array([[0.30, 0.25, 0.25, 0.20],   # scored by the expert of group {0, 1}
                     [0.30, 0.25, 0.25, 0.20],   # not scored (below min_mass): unchanged
                     [0.05, 0.05, 0.10, 0.80]])  # scored; the group's mass is small
    scored = (np.array([0, 2]), np.array([[0.1, 0.9], [0.9, 0.1]]))  # rows 0 and 2 of the chunk
    soft, hard = route_chunk(flat, [np.array([0, 1])], [scored])
    assert np.allclose(soft.sum(axis=1), 1) and np.allclose(hard.sum(axis=1), 1)
    assert np.allclose(soft[0], [0.055, 0.495, 0.25, 0.20])  # group mass 0.55, split 1:9
    assert np.allclose(soft[1], flat[1]) and np.allclose(soft[2], [0.09, 0.01, 0.10, 0.80])
    assert np.allclose(hard[0], [0.1, 0.9, 0, 0])  # the group holds most mass: the expert alone
    assert np.allclose(hard[2], flat[2])          # most mass outside every group: flat
    assert soft[0].argmax() == 1 and flat[0].argmax() == 0


def test_densify_accepts_padded_arrays() -> None:
    out = densify(np.array([[2, -1]]), np.array([[0.7, 0.0]]), n_classes=4)
    assert np.allclose(out, [[0.1, 0.1, 0.7, 0.1]])


def test_streamed_experts_route_like_the_whole_arrays_at_any_chunk_size(tmp_path) -> None:
    """Expert rows (a subset of the products, in the flat order, top-K inside the group) are handed
    out in step with chunks of flat products; the result equals routing everything at once."""
    rng = np.random.default_rng(0)
    n, c = 40, 12
    ids = rng.permutation(1000)[:n]
    flat = rng.dirichlet(np.ones(c), n)
    groups = [np.array([0, 3, 5, 7, 9]), np.array([1, 2])]
    whole = []
    experts = []
    for j, g in enumerate(groups):
        rows = np.flatnonzero(rng.random(n) < 0.6)
        probs = rng.dirichlet(np.ones(len(g)), len(rows))
        top = np.argsort(-probs, axis=1)[:, :3]  # the expert keeps its top 3 of its group
        top_p = np.take_along_axis(probs, top, axis=1)
        with writer(tmp_path / f"e{j}.parquet") as w:
            w.write_table(product_table(ids[rows], g[top], top_p))
        whole.append((rows, densify_columns(g[top], top_p, g, c, spread_over=len(g))))
        experts.append(ExpertOutput(f"g{j}", g, {"val": tmp_path / f"e{j}.parquet"}))
    want = route_chunk(flat, groups, whole)
    for chunk in (1, 7, 40):
        streams = [e.stream("val", batch_rows=5) for e in experts]
        parts = [route_chunk(flat[b : b + chunk], groups, [s.take(ids[b : b + chunk], c) for s in streams])
                 for b in range(0, n, chunk)]
        for s in streams:
            s.finish()
        for k in range(2):
            assert np.allclose(np.concatenate([p[k] for p in parts]), want[k], atol=1e-7)


def test_an_expert_file_out_of_the_flat_order_is_an_error(tmp_path) -> None:
    import pytest

    with writer(tmp_path / "e.parquet") as w:
        w.write_table(product_table([2, 1], [[0], [0]], [[1.0], [1.0]]))  # flat order is 1, 2
    stream = ExpertOutput("g", np.array([0, 1]), {"val": tmp_path / "e.parquet"}).stream("val", 10)
    for pid in (1, 2):
        stream.take(np.array([pid]), 2)
    with pytest.raises(ValueError, match="expert rows left after the last flat product"):
        stream.finish()
