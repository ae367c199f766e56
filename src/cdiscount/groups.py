"""Stage ``groups``: which sets of categories get a specific classifier (issue 4, first step).

Three rules, by ``groups.method``:
- ``level1_accuracy`` (reference report 001): level-1 groups the flat model recognises reliably
  (coarse accuracy >= ``high``) get an expert of their own; the middle band and the low band
  are each pooled into one group model.
- ``confusion`` (reference report 000): categories confused with each other at least ``k`` times
  in *both* the training and the validation confusion matrices are linked, and each connected
  set of two or more categories becomes a group.
- ``all`` (reference report 004): one group, named ``all``, holding every category, so one expert
  (e.g. ``specific.model: ovr``, one-vs-all binary heads) re-scores every product.
A group needs two categories or more to be worth an expert; a category may belong to no group.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .atomic import atomic_path, write_json
from .evaluation import write_csv
from .params import Section
from .topk import read_top1

log = logging.getLogger(__name__)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int):
    """Sparse [true, pred] counts (5,270 x 5,270 dense would be 111 MB of int32)."""
    return coo_matrix((np.ones(len(true), np.int64), (true, pred)), shape=(n_classes, n_classes)).tocsr()


def confusion_groups(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], n_classes: int,
                     k: int) -> list[list[int]]:
    """Connected sets of classes confused >= ``k`` times (off the diagonal) in both matrices."""
    both = confusion_matrix(*train, n_classes).minimum(confusion_matrix(*val, n_classes)).tocoo()
    keep = (both.data >= k) & (both.row != both.col)
    edges = coo_matrix((np.ones(keep.sum()), (both.row[keep], both.col[keep])), shape=(n_classes, n_classes))
    _, label = connected_components(edges, directed=True, connection="weak")
    sizes = np.bincount(label)
    groups = [sorted(np.flatnonzero(label == c).tolist()) for c in np.flatnonzero(sizes >= 2)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def level1_accuracy_groups(true: np.ndarray, pred: np.ndarray, level1_of: np.ndarray, high: float,
                           low: float) -> dict[str, list[int]]:
    """Report 001's bands of coarse (level-1) accuracy; ``level1_of[class] -> level-1 name``."""
    if not low <= high:
        raise ValueError(f"groups.low ({low}) must not exceed groups.high ({high})")
    t1, p1 = level1_of[true], level1_of[pred]
    groups: dict[str, list[int]] = {}
    bands: dict[str, list[int]] = {"band: middle": [], "band: low": []}
    for name in sorted(set(level1_of)):
        classes = np.flatnonzero(level1_of == name).tolist()
        seen = t1 == name
        if not seen.any():
            continue  # no evidence: leave it to the flat model
        acc = float((p1[seen] == name).mean())
        if acc >= high:
            groups[f"level1: {name}"] = classes
        else:
            bands["band: middle" if acc >= low else "band: low"] += classes
    groups.update(bands)
    return {g: sorted(c) for g, c in groups.items() if len(c) >= 2}


def all_group(n_classes: int) -> dict[str, list[int]]:
    """Report 004: a single group over every class (a group needs two categories to be worth an expert)."""
    return {"all": list(range(n_classes))} if n_classes >= 2 else {}


@dataclass(frozen=True)
class GroupsConfig(Section):
    """The ``groups`` section of params.yaml."""

    SECTION = "groups"
    method: Literal["level1_accuracy", "confusion", "all"]
    high: float  # level1_accuracy: coarse accuracy for a level-1 group's own expert
    low: float  # below high: pooled into "band: middle"; below low: "band: low"
    k: int  # confusion: times two categories must be confused in train AND val

    def check(self) -> None:
        self.require("high", 0 <= self.high <= 1, "an accuracy from 0 to 1")
        self.require("low", 0 <= self.low <= self.high, f"an accuracy from 0 to groups.high ({self.high})")
        self.require("k", self.k >= 1, "at least 1 confusion")


def run_groups(cfg: GroupsConfig, taxonomy: Path, split_path: Path, flat_train: Path, groups_out: Path,
               metrics_dir: Path) -> dict[str, Any]:
    """Write ``groups.json`` (group -> category ids) and a table of sizes and flat accuracies."""
    method = cfg.method
    tax = pd.read_parquet(taxonomy).sort_values("idx")
    idx_of = tax.set_index("category_id")["idx"]
    split = pd.read_parquet(split_path)
    top1 = read_top1(flat_train)
    folds = {f: split[split["fold"] == f] for f in ("train", "val")}
    truth = {f: folds[f]["category_id"].map(idx_of).to_numpy() for f in folds}
    guess = {f: top1.loc[folds[f]["_id"]].to_numpy(np.int64) for f in folds}
    n = len(tax)
    if method == "level1_accuracy":
        by_index = level1_accuracy_groups(truth["val"], guess["val"], tax["level1"].to_numpy(), cfg.high, cfg.low)
    elif method == "confusion":
        sets = confusion_groups((truth["train"], guess["train"]), (truth["val"], guess["val"]), n, cfg.k)
        by_index = {f"confusable {i:02d}": g for i, g in enumerate(sets)}
    else:
        by_index = all_group(n)
    cats = tax["category_id"].to_numpy()
    groups = {name: cats[idx].astype(int).tolist() for name, idx in by_index.items()}
    rows = []
    for name, idx in by_index.items():
        inside = np.isin(truth["val"], idx)
        rows.append({"group": name, "categories": len(idx), "val_products": int(inside.sum()),
                     "flat_accuracy": float((guess["val"][inside] == truth["val"][inside]).mean())
                     if inside.any() else float("nan"),
                     "level1": " | ".join(sorted(set(tax["level1"].to_numpy()[idx])))})
    table = pd.DataFrame(rows, columns=["group", "categories", "val_products", "flat_accuracy", "level1"])
    with atomic_path(groups_out) as tmp:
        tmp.write_text(json.dumps(groups, indent=2, ensure_ascii=False) + "\n")
    write_csv(table, metrics_dir / "groups.csv")
    metrics = {"method": method, "groups": len(groups),
               "categories_in_groups": int(sum(len(g) for g in groups.values())),
               "categories_outside_groups": int(n - len({c for g in groups.values() for c in g}))}
    write_json(metrics_dir / "groups.json", metrics)
    log.info("groups (%s):\n%s", method, table.to_string(index=False) if len(table) else "(none)")
    return metrics
