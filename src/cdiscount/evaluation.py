"""Validation metrics and plots shared by every model stage (product level = the Kaggle metric)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .topk import iter_topk, read_topk


def taxonomy_distance(pred: np.ndarray, true: np.ndarray, tax: pd.DataFrame) -> np.ndarray:
    """0 = same category, 1 = same level-2 node, 2 = same level-1 group, 3 = another group."""
    l1 = tax.sort_values("idx")["level1_idx"].to_numpy()
    l2 = tax.sort_values("idx")["level2_idx"].to_numpy()
    return np.where(pred == true, 0, np.where(l2[pred] == l2[true], 1, np.where(l1[pred] == l1[true], 2, 3)))


def evaluate_products(preds: pd.DataFrame, truth: pd.DataFrame, tax: pd.DataFrame,
                      image_preds: pd.DataFrame | None = None) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Metrics of top-K product predictions (a frame: ``_id``, ``top_idx`` lists) against the true
    categories (``_id``, ``category_id``); ``image_preds`` (``_id``, ``top_idx``) adds picture accuracy.
    Returns the metrics dict, per-category accuracy (taxonomy order) and the distance histogram."""
    df = truth[["_id"]].merge(preds, on="_id", how="left", validate="one_to_one")
    if df["top_idx"].isna().any():
        raise ValueError(f"{int(df['top_idx'].isna().sum())} products have no prediction")
    top = np.full((len(df), 5), -1, dtype=np.int64)
    for r, a in enumerate(df["top_idx"]):  # test-sized frames only; stages stream files via evaluate_file
        a = np.asarray(a[:5], dtype=np.int64)
        top[r, : len(a)] = a
    image = None
    if image_preds is not None:
        im = image_preds.merge(truth[["_id", "category_id"]], on="_id")
        image = (im["top_idx"].map(lambda a: int(a[0])).to_numpy(), im["category_id"].to_numpy())
    return evaluate_arrays(top, truth["category_id"].to_numpy(), tax, image)


def evaluate_file(path: Path, truth: pd.DataFrame, tax: pd.DataFrame, images_path: Path | None = None
                  ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """:func:`evaluate_products` of a top-K file, streamed: only ``truth``'s rows (the validation
    products) are kept, five classes each, so memory follows the validation set, not the file."""
    ids = truth["_id"].to_numpy()
    got, idx, _ = read_topk(path, ids)
    pos = pd.Index(got).get_indexer(ids)
    if (pos < 0).any():
        raise ValueError(f"{path}: {int((pos < 0).sum())} products have no prediction")
    top = np.full((len(ids), 5), -1, dtype=np.int64)
    top[:, : min(5, idx.shape[1])] = idx[pos, :5]
    image = None
    if images_path is not None:
        category = truth.set_index("_id")["category_id"]
        pred, true = [], []
        for bid, bidx, _ in iter_topk(images_path, ids):
            pred.append(bidx[:, 0])
            true.append(category.loc[bid].to_numpy())
        image = (np.concatenate(pred), np.concatenate(true)) if pred else (np.zeros(0, np.int64),) * 2
    return evaluate_arrays(top, truth["category_id"].to_numpy(), tax, image)


def evaluate_arrays(top: np.ndarray, true_category: np.ndarray, tax: pd.DataFrame,
                    image: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The metrics of ``[N, 5]`` best class indices (-1 = none) against true category ids;
    ``image`` = (top-1 class index, true category id) per picture."""
    from sklearn.metrics import f1_score  # here: stages that only write tables start without sklearn (1.4 s)

    idx_of = tax.set_index("category_id")["idx"]
    true = idx_of.loc[true_category].to_numpy()
    pred = top[:, 0]
    l1 = tax.sort_values("idx")["level1_idx"].to_numpy()
    metrics: dict[str, Any] = {
        "products": int(len(true)),
        "product_accuracy": float((pred == true).mean()),
        "top5_accuracy": float((top == true[:, None]).any(axis=1).mean()),
        "level1_accuracy": float((l1[pred] == l1[true]).mean()),
        "macro_f1": float(f1_score(true, pred, average="macro", labels=np.unique(true), zero_division=0)),
        # Report 002's metric. With one label per product and every prediction counted, micro-F1
        # equals accuracy (each error is one false positive and one false negative); kept for comparison.
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
    }
    if image is not None:
        metrics["image_accuracy"] = float((image[0] == idx_of.loc[image[1]].to_numpy()).mean())
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
