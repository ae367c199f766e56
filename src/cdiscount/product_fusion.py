"""Stage ``fusion``: a product-level classifier over all pictures of a product at once.

The backbone scores a product by averaging its pictures' log-probabilities, so each picture is
judged alone. The top Kaggle teams' largest single-model gain came from modelling the up to four
pictures together (the back cover, the label, the box disambiguate the front). This head does it
cheaply on the cached features: mean and max pooling of the picture features (or attention
pooling) plus the picture count, then an MLP. It trains on the train fold, is reported against
mean-of-picture-probabilities on the same validation products, and writes top-K predictions for
validation and test products (the ensemble's exchange format).

Everything streams: batches of products gather their rows from the memory-mapped shards.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_dir, write_json
from .evaluation import evaluate_file, write_csv
from .features import padded, product_spans, read_features
from .params import Section
from .topk import PRODUCT_SCHEMA, product_table, topk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionConfig(Section):
    """The ``fusion`` section of params.yaml."""

    SECTION = "fusion"
    pooling: Literal["meanmax", "attention"]
    max_pictures: int
    hidden: int
    dropout: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    top_k: int
    seed: int

    def check(self) -> None:
        for key in ("max_pictures", "hidden", "epochs", "batch_size", "top_k"):
            self.require(key, getattr(self, key) >= 1, ">= 1")
        self.require("lr", self.lr > 0, "> 0")
        self.require("weight_decay", self.weight_decay >= 0, ">= 0")
        for key in ("dropout", "label_smoothing"):
            self.require(key, 0 <= getattr(self, key) < 1, "0 <= value < 1")
        self.require("seed", self.seed >= 0, "an integer >= 0")


class FusionHead(nn.Module):
    """``[B, M, D]`` picture features + mask -> class logits, pooling over the pictures."""

    def __init__(self, dim: int, n_classes: int, cfg: FusionConfig) -> None:
        super().__init__()
        if cfg.pooling not in ("meanmax", "attention"):
            raise ValueError(f"fusion.pooling must be meanmax or attention, got {cfg.pooling!r}")
        self.pooling, self.max_pictures = cfg.pooling, cfg.max_pictures
        self.norm = nn.LayerNorm(dim)  # cached features are raw activations of any scale
        self.score = nn.Linear(dim, 1) if cfg.pooling == "attention" else None
        self.mlp = nn.Sequential(nn.Linear(2 * dim + cfg.max_pictures, cfg.hidden), nn.ReLU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        m = mask.unsqueeze(-1).to(x.dtype)
        count = mask.sum(dim=1)
        if self.score is None:
            first = (x * m).sum(dim=1) / count.clamp_min(1).unsqueeze(-1)
        else:
            w = torch.softmax(self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")), dim=1)
            first = (x * w.unsqueeze(-1)).sum(dim=1)
        biggest = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        n = nn.functional.one_hot((count - 1).clamp(0, self.max_pictures - 1), self.max_pictures).to(x.dtype)
        return self.mlp(torch.cat([first, biggest, n], dim=1))


@dataclass
class ProductFeatures:
    """The products of one feature folder, addressable by batch without loading features."""

    index: pd.DataFrame
    shards: list[np.ndarray]
    ids: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @classmethod
    def open(cls, feature_dir: Path) -> ProductFeatures:
        index, shards = read_features(feature_dir)
        return cls(index, shards, *product_spans(index["_id"].to_numpy()))

    @property
    def dim(self) -> int:
        return int(self.shards[0].shape[1])

    def batch(self, products: np.ndarray, max_pictures: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = padded(self.index, self.shards, self.start[products], self.count[products], max_pictures)
        return torch.from_numpy(x), torch.from_numpy(mask)


def train_fusion(feats: ProductFeatures, rows: np.ndarray, labels: np.ndarray, n_classes: int,
                 cfg: FusionConfig, *, progress: bool = True) -> FusionHead:
    """Fit the head on the products at ``rows`` of ``feats`` with class indices ``labels``."""
    torch.manual_seed(cfg.seed)
    model = FusionHead(feats.dim, n_classes, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(rows) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1))
    rng = np.random.default_rng(cfg.seed)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(rows))
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"fusion epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for b in bar:
            pick = order[b : b + cfg.batch_size]
            x, mask = feats.batch(rows[pick], cfg.max_pictures)
            loss = nn.functional.cross_entropy(model(x, mask), y_all[pick], label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(pick), seen + len(pick)
        log.info("fusion epoch %d/%d: train loss %.4f", epoch + 1, cfg.epochs, total / max(seen, 1))
    return model.eval()


@torch.no_grad()
def predict_fusion(model: FusionHead, feats: ProductFeatures, rows: np.ndarray, out: Path, *, top_k: int,
                   batch_size: int = 1024, progress: bool = True) -> None:
    """Top-K predictions of the products at ``rows`` (in that order), streamed into a parquet file."""
    model.eval()
    with pq.ParquetWriter(out, PRODUCT_SCHEMA) as w:
        for b in tqdm(range(0, len(rows), batch_size), desc=f"fusion {out.stem}", unit="batch",
                      disable=not progress):
            pick = rows[b : b + batch_size]
            x, mask = feats.batch(pick, model.max_pictures)
            idx, prob = topk(torch.softmax(model(x, mask), dim=1), top_k)
            w.write_table(product_table(feats.ids[pick], idx, prob))


def run_fusion(cfg: FusionConfig, *, taxonomy: Path, products: Path, split_path: Path, features: Path,
               flat_train: Path, out_dir: Path, metrics_dir: Path, progress: bool) -> dict[str, Any]:
    """Train on the train fold, write val/test top-K, compare with mean-of-picture-probabilities."""
    tax = pd.read_parquet(taxonomy)
    split = pd.read_parquet(split_path)
    truth = pd.read_parquet(products, columns=["_id", "category_id"])
    train_feats = ProductFeatures.open(features / "train")
    fold = pd.Series(train_feats.ids).map(split.set_index("_id")["fold"]).astype(str).to_numpy()
    label = pd.Series(train_feats.ids).map(truth.set_index("_id")["category_id"]).map(
        tax.set_index("category_id")["idx"]).to_numpy()
    train_rows, val_rows = np.flatnonzero(fold == "train"), np.flatnonzero(fold == "val")
    model = train_fusion(train_feats, train_rows, label[train_rows], len(tax), cfg, progress=progress)
    test_feats = ProductFeatures.open(features / "test")
    with atomic_dir(out_dir) as tmp:
        predict_fusion(model, train_feats, val_rows, tmp / "val_products.parquet", top_k=cfg.top_k,
                       progress=progress)
        predict_fusion(model, test_feats, np.arange(len(test_feats.ids)), tmp / "test_products.parquet",
                       top_k=cfg.top_k, progress=progress)
        torch.save({"state_dict": model.state_dict(), "config": cfg.__dict__, "dim": train_feats.dim,
                    "n_classes": len(tax)}, tmp / "fusion.pt")
    return evaluate_fusion(out_dir, train_feats, val_rows, tax=tax, split=split, flat_train=flat_train,
                           metrics_dir=metrics_dir)


def evaluate_fusion(out_dir: Path, feats: ProductFeatures, val_rows: np.ndarray, *, tax: pd.DataFrame,
                    split: pd.DataFrame, flat_train: Path, metrics_dir: Path) -> dict[str, Any]:
    """``fusion.json``: the head vs the backbone's mean of picture log-probabilities, on all
    validation products and on those with several pictures (where pooling can help)."""
    val = split[split["fold"] == "val"][["_id", "category_id"]]
    multi = val[val["_id"].isin(feats.ids[val_rows][feats.count[val_rows] > 1])]
    metrics: dict[str, Any] = {}
    for name, path in (("fusion", out_dir / "val_products.parquet"), ("mean_of_pictures", flat_train)):
        m, per_cat, _ = evaluate_file(path, val, tax)  # streamed: the validation rows only
        several = evaluate_file(path, multi, tax)[0] if len(multi) else {"product_accuracy": float("nan"),
                                                                         "products": 0}
        metrics[f"{name}_product_accuracy"] = m["product_accuracy"]
        metrics[f"{name}_multi_picture_accuracy"] = several["product_accuracy"]
        if name == "fusion":
            metrics.update(products=m["products"], multi_picture_products=several["products"],
                           top5_accuracy=m["top5_accuracy"], level1_accuracy=m["level1_accuracy"])
            write_csv(per_cat, metrics_dir / "fusion_per_category.csv")
    metrics["gain"] = metrics["fusion_product_accuracy"] - metrics["mean_of_pictures_product_accuracy"]
    write_json(metrics_dir / "fusion.json", metrics)
    log.info("fusion on validation: %s", metrics)
    return metrics
