"""Validation metrics and plots shared by every model stage (product level = the Kaggle metric)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_path


def taxonomy_distance(pred: np.ndarray, true: np.ndarray, tax: pd.DataFrame) -> np.ndarray:
    """0 = same category, 1 = same level-2 node, 2 = same level-1 group, 3 = another group."""
    l1 = tax.sort_values("idx")["level1_idx"].to_numpy()
    l2 = tax.sort_values("idx")["level2_idx"].to_numpy()
    return np.where(pred == true, 0, np.where(l2[pred] == l2[true], 1, np.where(l1[pred] == l1[true], 2, 3)))


def evaluate_products(preds: pd.DataFrame, truth: pd.DataFrame, tax: pd.DataFrame,
                      image_preds: pd.DataFrame | None = None) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Metrics of top-K product predictions against the true categories.

    ``preds``: ``_id``, ``top_idx`` (list), ``top_prob``; ``truth``: ``_id``, ``category_id``.
    Returns the metrics dict, per-category accuracy (taxonomy order) and the distance histogram.
    """
    from sklearn.metrics import f1_score  # here: stages that only write tables start without sklearn (1.4 s)

    idx_of = tax.set_index("category_id")["idx"]
    df = truth[["_id", "category_id"]].merge(preds, on="_id", how="left", validate="one_to_one")
    if df["top_idx"].isna().any():
        raise ValueError(f"{int(df['top_idx'].isna().sum())} products have no prediction")
    true = df["category_id"].map(idx_of).to_numpy()
    top = np.stack(df["top_idx"].map(lambda a: np.asarray(a[:5], dtype=np.int64)).to_numpy())
    pred = top[:, 0]
    l1 = tax.sort_values("idx")["level1_idx"].to_numpy()
    metrics: dict[str, Any] = {
        "products": int(len(df)),
        "product_accuracy": float((pred == true).mean()),
        "top5_accuracy": float((top == true[:, None]).any(axis=1).mean()),
        "level1_accuracy": float((l1[pred] == l1[true]).mean()),
        "macro_f1": float(f1_score(true, pred, average="macro", labels=np.unique(true), zero_division=0)),
        # Report 002's metric. With one label per product and every prediction counted, micro-F1
        # equals accuracy (each error is one false positive and one false negative); kept for comparison.
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
    }
    if image_preds is not None:
        im = image_preds.merge(truth[["_id", "category_id"]], on="_id")
        im_pred = im["top_idx"].map(lambda a: int(a[0])).to_numpy()
        metrics["image_accuracy"] = float((im_pred == im["category_id"].map(idx_of).to_numpy()).mean())
    per_cat = (pd.DataFrame({"idx": true, "correct": pred == true}).groupby("idx")
               .agg(products=("correct", "size"), accuracy=("correct", "mean")).reset_index())
    per_cat = tax[["idx", "category_id", "level1", "level3"]].merge(per_cat, on="idx")
    dist = taxonomy_distance(pred, true, tax)
    hist = pd.DataFrame({"distance": ["same category", "same level-2", "same level-1", "other level-1"],
                         "products": np.bincount(dist, minlength=4)})
    return metrics, per_cat, hist


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
