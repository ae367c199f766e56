"""Fusing the image model's and the text model's probabilities over the selected categories.

Both fusions have one form, a weighted product of experts on the products with usable text:

    p(k) ∝ p_img(k) ** a  *  p_text(k) ** b

- ``poe``: a = 1, b = w, with w picked on validation from a grid (by log-likelihood, which is
  smooth where accuracy is a step function of w).
- ``stack``: a and b fitted jointly by maximum likelihood: a multinomial logistic regression
  whose features are each class's log-probabilities under the two experts, with coefficients
  shared by all classes (a conditional logit). Two parameters: it cannot overfit a validation set
  the way a per-class stack would, and it is convex, so the fit is unique.

Products without usable text keep their image probabilities unchanged (their text row is
uniform, which a product of experts ignores anyway). The image model only keeps its top K
classes per product: ``cdiscount.topk.densify_columns`` spreads the mass it did not keep evenly
over the other classes and keeps the selected categories' columns, and :func:`renormalize`
floors and rescales them.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

FLOOR = 1e-6  # no expert may veto a class outright: a misread word must not zero the right genre


def renormalize(p: np.ndarray, floor: float = FLOOR) -> np.ndarray:
    """Rows floored at ``floor`` and scaled to sum to 1 (e.g. image probabilities restricted to
    the selected categories' columns)."""
    p = np.maximum(np.asarray(p, dtype=np.float64), floor)
    return p / p.sum(axis=1, keepdims=True)


def labels_to_index(labels: Sequence[Hashable], classes: Sequence[Hashable]) -> np.ndarray:
    """Column of each label in ``classes``; -1 for labels outside them (not scored, not fitted)."""
    pos = {c: j for j, c in enumerate(list(classes))}
    return np.array([pos.get(x, -1) for x in list(labels)], dtype=np.int64)


@dataclass(frozen=True)
class Fusion:
    """p ∝ p_img**image_weight * p_text**text_weight where text is usable; p_img elsewhere."""

    method: str
    image_weight: float = 1.0
    text_weight: float = 1.0

    def apply(self, p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray) -> np.ndarray:
        p_img = renormalize(p_img)
        fused = p_img.copy()
        usable = np.asarray(usable, dtype=bool)
        if usable.any():
            logits = self.image_weight * np.log(p_img[usable]) + self.text_weight * np.log(renormalize(p_text[usable]))
            fused[usable] = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        return fused

    def to_dict(self) -> dict[str, float | str]:
        return {"method": self.method, "image_weight": self.image_weight, "text_weight": self.text_weight}


def product_of_experts(p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, weight: float) -> np.ndarray:
    """p_img * p_text**weight, renormalised, on products with usable text; p_img elsewhere."""
    return Fusion("poe", 1.0, float(weight)).apply(p_img, p_text, usable)


def _mean_nll(a: float, b: float, li: np.ndarray, lt: np.ndarray, y: np.ndarray) -> float:
    z = a * li + b * lt
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def _fit_rows(p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, y: np.ndarray):
    y = np.asarray(y, dtype=np.int64)
    rows = np.asarray(usable, dtype=bool) & (y >= 0)
    return np.log(renormalize(p_img[rows])), np.log(renormalize(p_text[rows])), y[rows]


def fit_poe_weight(p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, y: np.ndarray,
                   grid: Sequence[float] | None = None) -> tuple[Fusion, dict[float, float]]:
    """The text weight of the grid with the best validation log-likelihood (products with usable
    text and a label among the columns; ``y`` = column index, -1 = none). Returns the fusion and
    the mean negative log-likelihood of every grid value."""
    grid = list(np.round(np.arange(0.0, 5.01, 0.1), 2) if grid is None else grid)
    li, lt, yy = _fit_rows(p_img, p_text, usable, y)
    if len(yy) == 0:
        return Fusion("poe", 1.0, 0.0), {}
    scores = {float(w): _mean_nll(1.0, float(w), li, lt, yy) for w in grid}
    best = min(scores, key=lambda w: (scores[w], w))  # ties: the smaller weight
    return Fusion("poe", 1.0, best), scores


def fit_stack(p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, y: np.ndarray,
              l2: float = 1e-3) -> Fusion:
    """Image and text weights by maximum likelihood (a conditional logit on the two experts'
    log-probabilities), with a small ridge toward (1, 0); weights kept in [0, 20]."""
    li, lt, yy = _fit_rows(p_img, p_text, usable, y)
    if len(yy) == 0:
        return Fusion("stack", 1.0, 0.0)
    rows = np.arange(len(yy))

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = w
        z = a * li + b * lt
        lse = logsumexp(z, axis=1, keepdims=True)
        q = np.exp(z - lse)
        nll = float(np.mean(lse[:, 0] - z[rows, yy]))
        ga = float(np.mean((q * li).sum(axis=1) - li[rows, yy]))
        gb = float(np.mean((q * lt).sum(axis=1) - lt[rows, yy]))
        reg = 0.5 * l2 * ((a - 1.0) ** 2 + b ** 2)
        return nll + reg, np.array([ga + l2 * (a - 1.0), gb + l2 * b])

    res = minimize(objective, x0=np.array([1.0, 1.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, 20.0)] * 2)
    a, b = (float(v) for v in res.x)
    return Fusion("stack", a, b)


def fit_fusion(method: str, p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, y: np.ndarray) -> Fusion:
    """``method`` 'poe' (grid over the text weight) or 'stack' (both weights by maximum likelihood)."""
    if method == "poe":
        return fit_poe_weight(p_img, p_text, usable, y)[0]
    if method == "stack":
        return fit_stack(p_img, p_text, usable, y)
    raise ValueError(f"unknown fusion method {method!r}; known: 'poe', 'stack'")


def cross_fitted(method: str, p_img: np.ndarray, p_text: np.ndarray, usable: np.ndarray, y: np.ndarray,
                 folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fused probabilities of every product from a fusion fitted on the other folds: an honest
    validation accuracy for a fusion that is itself fitted on validation."""
    n = len(p_img)
    fold = np.random.default_rng(seed).permutation(n) % max(2, folds)
    out = np.empty((n, p_img.shape[1]))
    for f in np.unique(fold):
        test = fold == f
        fusion = fit_fusion(method, p_img[~test], p_text[~test], np.asarray(usable)[~test], np.asarray(y)[~test])
        out[test] = fusion.apply(p_img[test], p_text[test], np.asarray(usable)[test])
    return out


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy over rows with a label among the columns (``y`` >= 0)."""
    y = np.asarray(y)
    rows = y >= 0
    return float((p[rows].argmax(axis=1) == y[rows]).mean()) if rows.any() else 0.0
