"""Fusion of image and text probabilities on constructed cases where the answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from cdiscount.ocr.text_fusion import (Fusion, accuracy, cross_fitted, fit_fusion, fit_poe_weight, fit_stack,
                                       labels_to_index, product_of_experts, renormalize)
from cdiscount.topk import densify_columns

K = 5


def case(n: int, seed: int, text_informative: bool = True, image_at_chance: bool = True):
    """Labels, image probabilities (at chance or mildly informative), text probabilities
    (informative or pure noise) for 70 % of products, uniform for the others."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, size=n)
    p_img = rng.dirichlet(np.ones(K), size=n)
    if not image_at_chance:
        p_img[np.arange(n), y] += 0.4
        p_img = renormalize(p_img)
    usable = rng.random(n) < 0.7
    p_text = rng.dirichlet(np.ones(K), size=n)
    if text_informative:
        p_text[np.arange(n), y] += 1.0
        p_text = renormalize(p_text)
    p_text[~usable] = 1 / K
    return y, p_img, p_text, usable


@pytest.mark.parametrize("method", ["poe", "stack"])
def test_fusion_beats_image_only_when_the_image_is_at_chance(method: str) -> None:
    y, p_img, p_text, usable = case(1200, seed=0)
    fusion = fit_fusion(method, p_img[:600], p_text[:600], usable[:600], y[:600])
    fused = fusion.apply(p_img[600:], p_text[600:], usable[600:])
    image_only, fused_acc = accuracy(p_img[600:], y[600:]), accuracy(fused, y[600:])
    assert image_only < 0.3  # chance is 0.2
    assert fused_acc > image_only + 0.35, (image_only, fused_acc, fusion)
    assert fusion.text_weight > 0.5
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)


def test_products_without_usable_text_keep_their_image_probabilities() -> None:
    y, p_img, p_text, usable = case(300, seed=1)
    p_text[~usable] = np.random.default_rng(9).dirichlet(np.ones(K), size=int((~usable).sum()))  # garbage rows
    for fusion in (Fusion("poe", 1.0, 2.0), Fusion("stack", 1.7, 0.8)):
        fused = fusion.apply(p_img, p_text, usable)
        np.testing.assert_allclose(fused[~usable], renormalize(p_img[~usable]))
        assert not np.allclose(fused[usable], renormalize(p_img[usable]))
        np.testing.assert_allclose(fused.sum(axis=1), 1.0)


def test_noise_text_gets_little_weight_and_does_not_hurt() -> None:
    y, p_img, p_text, usable = case(2000, seed=2, text_informative=False, image_at_chance=False)
    poe, scores = fit_poe_weight(p_img, p_text, usable, y)
    assert poe.text_weight <= 0.2 and scores[0.0] <= scores[1.0]
    stack = fit_stack(p_img, p_text, usable, y)
    assert stack.text_weight < 0.2 and stack.image_weight > 0.5
    assert accuracy(stack.apply(p_img, p_text, usable), y) >= accuracy(p_img, y) - 0.02


def test_product_of_experts_by_hand() -> None:
    p_img = np.array([[0.5, 0.3, 0.2]])
    p_text = np.array([[0.1, 0.1, 0.8]])
    fused = product_of_experts(p_img, p_text, np.array([True]), weight=1.0)
    expected = np.array([0.05, 0.03, 0.16]) / 0.24
    np.testing.assert_allclose(fused[0], expected, rtol=1e-4)
    np.testing.assert_allclose(product_of_experts(p_img, p_text, np.array([True]), weight=0.0), p_img, rtol=1e-5)


def test_fusion_with_known_weights_is_the_exact_weighted_product_of_experts() -> None:
    p_img = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    p_text = np.array([[0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])
    fused = Fusion("stack", image_weight=2.0, text_weight=1.0).apply(p_img, p_text, np.array([True, False]))
    # row 0: p_img**2 * p_text = [0.05, 0.0125, 0.0375], sum 0.1; row 1 has no usable text: its image row
    np.testing.assert_allclose(fused, [[0.5, 0.125, 0.375], [0.2, 0.2, 0.6]], rtol=1e-9)
    # weights swapped: p_img * p_text**2 = [0.02, 0.01, 0.09], sum 0.12
    np.testing.assert_allclose(Fusion("stack", 1.0, 2.0).apply(p_img[:1], p_text[:1], np.array([True])),
                               [[1 / 6, 1 / 12, 3 / 4]], rtol=1e-9)


def test_accuracy_counts_only_rows_with_a_label_among_the_columns() -> None:
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    assert accuracy(p, np.array([1, 1, 2, -1])) == 2 / 3  # rows 0 and 2 right, row 1 wrong, row 3 not scored
    assert accuracy(p, np.array([1, 0, 2, 1])) == 1.0
    assert accuracy(p, np.array([0, 2, 1, 0])) == 0.0
    assert accuracy(p, np.array([-1, -1, -1, -1])) == 0.0  # nothing to score


def test_poe_weight_is_the_grid_value_with_the_best_log_likelihood() -> None:
    p_img = np.array([[0.5, 0.5]])  # the image has no opinion, the text says 0.8 / 0.2
    p_text = np.array([[0.8, 0.2]])
    usable = np.array([True])
    fusion, scores = fit_poe_weight(p_img, p_text, usable, np.array([0]), grid=[0.0, 1.0, 2.0])
    # mean NLL of the right class 0 under p ∝ p_text**w: log 2, -log 0.8, -log(0.64 / 0.68)
    assert scores == pytest.approx({0.0: np.log(2), 1.0: -np.log(0.8), 2.0: -np.log(0.64 / 0.68)}, rel=1e-5)
    assert fusion == Fusion("poe", 1.0, 2.0)
    assert fit_poe_weight(p_img, p_text, usable, np.array([1]), grid=[0.0, 1.0, 2.0])[0].text_weight == 0.0
    # uniform text: every weight scores log 2, the tie goes to the smallest
    tie, scores = fit_poe_weight(p_img, np.array([[0.5, 0.5]]), usable, np.array([0]), grid=[2.0, 0.5, 1.0])
    assert tie.text_weight == 0.5 and scores == pytest.approx({2.0: np.log(2), 0.5: np.log(2), 1.0: np.log(2)})


def test_densify_columns_then_renormalize_restricts_and_spreads_the_rest() -> None:
    # 10 classes; the selected ones are 2, 0, 7 (output columns in that order); row 1 keeps one class (-1 = pad)
    top_idx = np.array([[2, 0, 5], [9, -1, -1]])
    top_prob = np.array([[0.6, 0.2, 0.1], [0.99, 0.0, 0.0]])
    selected = np.array([2, 0, 7])
    dense = densify_columns(top_idx, top_prob, selected, n_classes=10)
    rest = 0.1 / 7  # mass the top 3 left, per class outside them
    np.testing.assert_allclose(dense, [[0.6, 0.2, rest], [0.01 / 9] * 3], rtol=1e-6)  # a pad is no class
    p = renormalize(dense)
    np.testing.assert_allclose(p[0], np.array([0.6, 0.2, rest]) / (0.8 + rest), rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3)  # the image model put everything elsewhere: no opinion here
    assert labels_to_index([7, 3, 2], [2, 0, 7]).tolist() == [2, -1, 0]


def test_cross_fitted_is_honest_and_valid() -> None:
    y, p_img, p_text, usable = case(500, seed=3)
    fused = cross_fitted("stack", p_img, p_text, usable, y, folds=5)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    assert accuracy(fused, y) > accuracy(p_img, y) + 0.3
    labelled = y.copy()
    y[:50] = -1  # labels outside the selected categories are neither fitted nor scored
    assert fit_stack(p_img, p_text, usable, y) == fit_stack(p_img[50:], p_text[50:], usable[50:], y[50:])
    assert fit_poe_weight(p_img, p_text, usable, y) == fit_poe_weight(p_img[50:], p_text[50:], usable[50:], y[50:])
    fused = cross_fitted("poe", p_img, p_text, usable, y)
    assert accuracy(fused, y) == accuracy(fused[50:], labelled[50:])
    assert accuracy(fused, y) == (fused[50:].argmax(axis=1) == labelled[50:]).sum() / 450
    with pytest.raises(ValueError, match="unknown fusion"):
        fit_fusion("vote", p_img, p_text, usable, y)
