import numpy as np

from cdiscount.routing import group_mass, hard_route, soft_route


def _flat(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    x = rng.random((n, c)) ** 3
    return x / x.sum(axis=1, keepdims=True)


def test_soft_routing_keeps_group_mass_and_sums_to_one() -> None:
    rng = np.random.default_rng(0)
    flat = _flat(rng, 50, 10)
    groups = [np.array([0, 1, 2]), np.array([5, 7])]
    experts = [_flat(rng, 50, 3), _flat(rng, 50, 2)]
    out = soft_route(flat, groups, experts)
    assert np.allclose(out.sum(axis=1), 1)
    assert np.allclose(group_mass(out, groups), group_mass(flat, groups))
    outside = [3, 4, 6, 8, 9]
    assert np.allclose(out[:, outside], flat[:, outside])
    assert np.allclose(out[:, [5, 7]] / out[:, [5, 7]].sum(1, keepdims=True), experts[1])


def test_hard_routing_gives_the_whole_product_to_the_winning_group() -> None:
    flat = np.array([[0.5, 0.2, 0.1, 0.2],    # group {0,1} holds 0.7: routed
                     [0.1, 0.1, 0.05, 0.75],  # outside mass 0.75 wins: flat
                     [0.05, 0.05, 0.5, 0.4]])  # group {2} is a singleton list here: routed
    groups = [np.array([0, 1]), np.array([2])]
    experts = [np.array([[0.1, 0.9]] * 3), np.ones((3, 1))]
    out = hard_route(flat, groups, experts)
    assert np.allclose(out[0], [0.1, 0.9, 0, 0])
    assert np.allclose(out[1], flat[1])
    assert np.allclose(out[2], [0, 0, 1, 0])
    assert np.allclose(out.sum(axis=1), 1)
    assert np.allclose(soft_route(flat, [], []), flat) and np.allclose(hard_route(flat, [], []), flat)
