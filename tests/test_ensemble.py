import numpy as np

from cdiscount.components import Component
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
