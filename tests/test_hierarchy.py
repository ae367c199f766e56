import numpy as np
import pandas as pd

from cdiscount.hierarchy import ExpertOutput, route_chunk
from cdiscount.topk import densify


def test_densify_keeps_the_top_k_and_spreads_the_rest() -> None:
    out = densify([[2, 0], [1, 3]], [[0.6, 0.2], [0.5, 0.5]], n_classes=4)
    assert np.allclose(out.sum(axis=1), 1)
    assert np.allclose(out[0], [0.2, 0.1, 0.6, 0.1]) and np.allclose(out[1], [0, 0.5, 0, 0.5])
    assert densify([], [], 4).shape == (0, 4)


def test_routing_moves_mass_only_inside_the_group_and_only_for_scored_products() -> None:
    flat = np.array([[0.30, 0.25, 0.25, 0.20],   # scored by the expert of group {0, 1}
                     [0.30, 0.25, 0.25, 0.20],   # not scored (below min_mass): unchanged
                     [0.05, 0.05, 0.10, 0.80]])  # scored; the group's mass is small
    expert = ExpertOutput("g", np.array([0, 1]), {"val": pd.Index([10, 12]), "test": pd.Index([])},
                          {"val": np.array([[0.1, 0.9], [0.9, 0.1]]), "test": np.zeros((0, 2))})
    soft, hard = route_chunk(flat, np.array([10, 11, 12]), [expert], "val")
    assert np.allclose(soft.sum(axis=1), 1) and np.allclose(hard.sum(axis=1), 1)
    assert np.allclose(soft[0], [0.055, 0.495, 0.25, 0.20])  # group mass 0.55, split 1:9
    assert np.allclose(soft[1], flat[1]) and np.allclose(soft[2], [0.09, 0.01, 0.10, 0.80])
    assert np.allclose(hard[0], [0.1, 0.9, 0, 0])  # the group holds most mass: the expert alone
    assert np.allclose(hard[2], flat[2])          # most mass outside every group: flat
    assert soft[0].argmax() == 1 and flat[0].argmax() == 0


def test_densify_accepts_padded_arrays() -> None:
    out = densify(np.array([[2, -1]]), np.array([[0.7, 0.0]]), n_classes=4)
    assert np.allclose(out, [[0.1, 0.1, 0.7, 0.1]])
