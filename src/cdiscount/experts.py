"""Group experts on cached bottleneck features: ``mlp`` (torch), ``logreg``, ``ovr``, ``xgboost``.

They see only the pictures of their group's categories, and predict probabilities over those
categories. ``xgboost`` follows reference report 000's stage II (``tree_method=hist``, CUDA when
present), with its grid over depth, trees and learning rate available (``grid: true``), chosen on
a held-out fifth of the training pictures. ``ovr`` follows reference report 004: one binary
logistic regression per category (one-vs-all), their probabilities renormalised to sum to 1.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from .params import Section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpertConfig(Section):
    """The ``specific`` section of params.yaml but ``slots`` and ``per_slot`` (one slot's view of it)."""

    SECTION = "specific"
    model: Literal["mlp", "logreg", "ovr", "xgboost"]
    min_mass: float  # experts score products with at least this flat probability on their group
    top_k: int  # classes of its group an expert keeps per product
    cap_per_category: int  # training pictures per category (0 = all): bounds a pooled band's cost
    hidden: int
    epochs: int
    lr: float
    weight_decay: float
    dropout: float
    C: float  # logreg, ovr
    max_depth: int  # xgboost
    n_estimators: int
    learning_rate: float
    grid: bool  # xgboost: report 000's grid search
    grid_max_depth: list[int]
    grid_n_estimators: list[int]
    grid_learning_rate: list[float]
    seed: int

    def check(self) -> None:
        self.require("min_mass", 0 <= self.min_mass <= 1, "a probability from 0 to 1")
        self.require("top_k", self.top_k >= 1, ">= 1 class per product")
        self.require("cap_per_category", self.cap_per_category >= 0, "0 (no cap) or a number of pictures")
        for key in ("hidden", "epochs", "max_depth", "n_estimators"):
            self.require(key, getattr(self, key) >= 1, ">= 1")
        for key in ("lr", "C", "learning_rate"):
            self.require(key, getattr(self, key) > 0, "> 0")
        self.require("weight_decay", self.weight_decay >= 0, ">= 0")
        self.require("dropout", 0 <= self.dropout < 1, "0 <= value < 1")
        for key in ("grid_max_depth", "grid_n_estimators", "grid_learning_rate"):
            self.require(key, len(getattr(self, key)) >= 1 and min(getattr(self, key)) > 0, "a non-empty list of "
                         "values > 0")
        self.require("seed", self.seed >= 0, "an integer >= 0")


class Expert:
    """A fitted expert: ``predict_proba(features) -> [N, n_classes]`` over its local classes."""

    def __init__(self, kind: str, n_classes: int, scaler: StandardScaler, model: Any,
                 classes: np.ndarray | None = None) -> None:
        self.kind, self.n_classes, self.scaler, self.model = kind, n_classes, scaler, model
        self.classes = np.arange(n_classes) if classes is None else np.asarray(classes)  # column -> local class

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(np.asarray(x, dtype=np.float32))
        if self.kind == "mlp":
            self.model.eval()
            with torch.no_grad():
                return torch.softmax(self.model(torch.from_numpy(z.astype(np.float32))), dim=1).numpy()
        proba = np.ones((len(z), 1)) if self.kind == "constant" else self.model.predict_proba(z)
        if self.kind == "ovr":  # independent binary heads: make them one distribution over the classes seen
            proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
        full = np.zeros((len(z), self.n_classes), dtype=np.float64)  # classes never seen in training stay 0
        full[:, self.classes] = proba
        return full


def _mlp(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: ExpertConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    net = nn.Sequential(nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                        nn.Linear(cfg.hidden, n_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=g).split(256):
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def _xgb(cfg: ExpertConfig, n_classes: int, **kw):
    import xgboost as xgb

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return xgb.XGBClassifier(tree_method="hist", device=device, random_state=cfg.seed, n_jobs=0,
                             objective="multi:softprob", num_class=n_classes, **kw)


def _xgboost(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: ExpertConfig):
    # XGBoost wants labels 0..k-1 that all occur: fit on the classes present, map back in predict.
    present = np.unique(y)
    local = np.searchsorted(present, y)
    params = {"max_depth": cfg.max_depth, "n_estimators": cfg.n_estimators, "learning_rate": cfg.learning_rate}
    if cfg.grid and len(present) > 1:
        rng = np.random.default_rng(cfg.seed)
        held = rng.random(len(y)) < 0.2
        best = -1.0
        for d, n, lr in itertools.product(cfg.grid_max_depth, cfg.grid_n_estimators, cfg.grid_learning_rate):
            m = _xgb(cfg, len(present), max_depth=d, n_estimators=n, learning_rate=lr).fit(x[~held], local[~held])
            acc = float((m.predict(x[held]) == local[held]).mean())
            log.info("xgboost grid depth=%d trees=%d lr=%g: held-out accuracy %.4f", d, n, lr, acc)
            if acc > best:
                best, params = acc, {"max_depth": d, "n_estimators": n, "learning_rate": lr}
    return _xgb(cfg, len(present), **params).fit(x, local), present


def fit_expert(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: ExpertConfig) -> Expert:
    """Fit an expert on features ``x`` with local labels ``y`` in ``0..n_classes-1``."""
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    if len(np.unique(y)) < 2:  # one category seen: nothing to learn, all its mass on that one
        return Expert("constant", n_classes, scaler, None, np.unique(y))
    if cfg.model == "mlp":
        return Expert("mlp", n_classes, scaler, _mlp(z, y, n_classes, cfg))
    if cfg.model == "logreg":
        model = LogisticRegression(C=cfg.C, max_iter=2000).fit(z, y)
        return Expert("logreg", n_classes, scaler, model, model.classes_)
    if cfg.model == "ovr":
        model = OneVsRestClassifier(LogisticRegression(C=cfg.C, max_iter=2000)).fit(z, y)
        return Expert("ovr", n_classes, scaler, model, model.classes_)
    if cfg.model == "xgboost":
        model, present = _xgboost(z, y, n_classes, cfg)
        return Expert("xgboost", n_classes, scaler, model, present)
    raise ValueError(f"specific.model must be mlp, logreg, ovr or xgboost, got {cfg.model!r}")
