"""Stage ``hierarchy``: route the flat backbone's predictions through the group experts.

Reference report 001 decided the level-1 group first and then asked that group's specific
classifier (hard routing); a wrong coarse decision then cannot be undone. Soft routing (the
default written for the ensemble) gives each group its flat probability mass and lets the expert
redistribute it inside the group, so the flat model stays in charge of *which* group. Both are
measured on validation against the flat model, with the product fusion head alongside.

The flat predictions and the experts' are top-K files, streamed in step a chunk of products at a
time; only the chunk in flight is densified (the missing mass spread evenly over the classes
outside the top K: over all classes for the flat model, over its group for an expert), so memory
is ``hierarchy.chunk`` x classes whatever the number of products.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from .atomic import atomic_dir, write_json
from .evaluation import write_csv
from .folds import fold_products
from .params import Section
from .routing import group_mass, hard_route, soft_route
from .topk import PRODUCT_SCHEMA, concat, densify, densify_columns, iter_topk, product_table, topk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HierarchyConfig(Section):
    """The ``hierarchy`` section of params.yaml."""

    SECTION = "hierarchy"
    routing: Literal["soft", "hard"]  # the routing written for the ensemble
    top_k: int
    chunk: int  # products densified at once (chunk x classes float32 in memory)

    def check(self) -> None:
        self.require("top_k", self.top_k >= 1, ">= 1")
        self.require("chunk", self.chunk >= 1, ">= 1 product per chunk")


@dataclass
class ExpertOutput:
    """One group expert's output: its categories (global idx) and per split a top-K file of the
    products it scored, in the flat file's order (see ``specific``)."""

    group: str
    classes: np.ndarray
    files: dict[str, Path]

    def stream(self, split: str, batch_rows: int) -> ExpertStream:
        return ExpertStream(self, self.files[split], batch_rows)


class ExpertStream:
    """An expert's rows handed out chunk by chunk, in step with the flat predictions.

    The expert scored a subset of the flat file's products in the flat file's order, so the rows
    belonging to a chunk of flat products are always the next ones: one batch in memory.
    """

    def __init__(self, expert: ExpertOutput, path: Path, batch_rows: int) -> None:
        self.expert, self.path = expert, path
        self._batches = iter_topk(path, batch_rows=batch_rows)
        self._ids = np.zeros(0, np.int64)
        self._idx = np.zeros((0, 0), np.int64)
        self._prob = np.zeros((0, 0), np.float32)

    def take(self, ids: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``ids`` the expert scored, their [n, group] distributions inside the group)."""
        got = []
        while True:
            if not len(self._ids):
                nxt = next(self._batches, None)
                if nxt is None:
                    break
                self._ids, self._idx, self._prob = nxt
            inside = np.isin(self._ids, ids)
            n = len(inside) if inside.all() else int(np.argmin(inside))  # the leading rows of this chunk
            got.append((self._ids[:n], self._idx[:n], self._prob[:n]))
            self._ids, self._idx, self._prob = self._ids[n:], self._idx[n:], self._prob[n:]
            if len(self._ids):
                break
        classes = self.expert.classes
        got_ids, idx, prob = concat(got)
        if not len(got_ids):
            return np.zeros(0, np.int64), np.zeros((0, len(classes)))
        within = densify_columns(idx, prob, classes, n_classes, spread_over=len(classes))
        within /= np.maximum(within.sum(axis=1, keepdims=True), 1e-12)
        return pd.Index(ids).get_indexer(got_ids), within

    def finish(self) -> None:
        """Every row must have been handed out: a row left over means the files disagree on order."""
        if len(self._ids) or next(self._batches, None) is not None:
            raise ValueError(f"{self.path}: expert rows left after the last flat product (product _id order "
                             "differs from the flat predictions'; re-run the specific stage)")


def load_experts(specific_dir: Path) -> list[ExpertOutput]:
    """Every trained group expert under ``models/specific/<slot>/<rank>/``, in group rank order."""
    experts = []
    for meta_path in specific_dir.glob("*/*/meta.json"):
        meta = json.loads(meta_path.read_text())
        experts.append((meta["rank"], meta["group"], meta["classes"], meta_path.parent))
    return [ExpertOutput(group, np.asarray(classes, dtype=np.int64),
                         {s: d / f"{s}_products.parquet" for s in ("val", "test")})
            for _, group, classes, d in sorted(experts, key=lambda e: e[0])]


def route_chunk(flat: np.ndarray, groups: list[np.ndarray], scored: list[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Soft- and hard-routed [N, C] distributions of one chunk; ``scored[j]`` = (rows group ``j``'s
    expert scored, their distributions inside the group).

    A product an expert did not score (its group mass was below ``specific.min_mass``) keeps the
    flat distribution inside that group, so routing leaves it unchanged.
    """
    mass = group_mass(flat, groups)
    inside = []
    for j, (g, (rows, probs)) in enumerate(zip(groups, scored)):
        within = flat[:, g] / np.maximum(mass[:, j : j + 1], 1e-12)
        within[rows] = probs
        inside.append(within)
    return soft_route(flat, groups, inside), hard_route(flat, groups, inside)


def run_hierarchy(cfg: HierarchyConfig, *, taxonomy: Path, split_path: Path, flat: Path, specific: Path,
                  fusion_metrics: Path, out_dir: Path, metrics_dir: Path, progress: bool) -> dict[str, Any]:
    tax = pd.read_parquet(taxonomy).sort_values("idx")
    n_classes = len(tax)
    experts = load_experts(specific)
    val = fold_products(split_path, "val")
    val_ids = val["_id"].to_numpy()
    with atomic_dir(out_dir) as tmp:
        val_top1 = _route_split(flat / "train_products.parquet", val_ids, experts, "val", n_classes, cfg,
                                tmp / "val_products.parquet", progress)
        _route_split(flat / "test_products.parquet", None, experts, "test", n_classes, cfg,
                     tmp / "test_products.parquet", progress)
    truth = pd.Series(val_top1.pop("_id")).map(val.set_index("_id")["category_id"]).map(
        tax.set_index("category_id")["idx"])
    return evaluate_hierarchy(truth.to_numpy(), val_top1, experts, tax, fusion_metrics, metrics_dir)


def _route_split(flat_file: Path, ids: np.ndarray | None, experts: list[ExpertOutput], split: str, n_classes: int,
                 cfg: HierarchyConfig, out: Path, progress: bool) -> dict[str, np.ndarray]:
    """Write the chosen routing's top-K for ``flat_file``'s products (only ``ids`` if given), a chunk
    at a time; return ``_id`` and the top-1 of each routing (validation: the products evaluated)."""
    top1: dict[str, list[np.ndarray]] = {"_id": [], "flat": [], "soft": [], "hard": []}
    streams = [e.stream(split, cfg.chunk) for e in experts]
    groups = [e.classes for e in experts]
    with pq.ParquetWriter(out, PRODUCT_SCHEMA) as w:
        for chunk_ids, idx, prob in tqdm(iter_topk(flat_file, ids, batch_rows=cfg.chunk), desc=f"hierarchy {split}",
                                         unit="chunk", disable=not progress):
            dense = densify(idx, prob, n_classes)
            soft, hard = route_chunk(dense, groups, [s.take(chunk_ids, n_classes) for s in streams])
            if split == "val":
                top1["_id"].append(chunk_ids)
                for name, probs in (("flat", dense), ("soft", soft), ("hard", hard)):
                    top1[name].append(probs.argmax(axis=1))
            out_idx, out_prob = topk(torch.from_numpy(soft if cfg.routing == "soft" else hard), cfg.top_k)
            w.write_table(product_table(chunk_ids, out_idx, out_prob))
    for s in streams:
        s.finish()
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in top1.items()}


def evaluate_hierarchy(true: np.ndarray, top1: dict[str, np.ndarray], experts: list[ExpertOutput],
                       tax: pd.DataFrame, fusion_metrics: Path, metrics_dir: Path) -> dict[str, Any]:
    """``metrics/hierarchy.json`` plus per-group and per-category (taxonomy order) tables."""
    correct = {k: v == true for k, v in top1.items()}
    metrics: dict[str, Any] = {
        "products": int(len(true)),
        "flat_product_accuracy": float(correct["flat"].mean()),
        "hierarchical_product_accuracy": float(correct["soft"].mean()),
        "hard_routing_product_accuracy": float(correct["hard"].mean()),
    }
    if fusion_metrics.exists():
        metrics["fusion_product_accuracy"] = json.loads(fusion_metrics.read_text())["fusion_product_accuracy"]
    rows = []
    for e in experts:
        inside = np.isin(true, e.classes)
        rows.append({"group": e.group, "categories": len(e.classes), "val_products": int(inside.sum()),
                     **{f"{k}_accuracy": float(c[inside].mean()) if inside.any() else float("nan")
                        for k, c in correct.items()}})
    per_group = pd.DataFrame(rows, columns=["group", "categories", "val_products", "flat_accuracy",
                                            "soft_accuracy", "hard_accuracy"])
    metrics["groups"] = {r["group"]: {"val_products": r["val_products"], "flat_accuracy": r["flat_accuracy"],
                                      "hierarchical_accuracy": r["soft_accuracy"], "hard_accuracy": r["hard_accuracy"]}
                         for r in rows}
    per_cat = (pd.DataFrame({"idx": true, "flat_accuracy": correct["flat"], "hierarchical_accuracy": correct["soft"]})
               .groupby("idx").agg(products=("flat_accuracy", "size"), flat_accuracy=("flat_accuracy", "mean"),
                                   hierarchical_accuracy=("hierarchical_accuracy", "mean")).reset_index())
    per_cat = tax[["idx", "category_id", "level1", "level3"]].merge(per_cat, on="idx")
    write_csv(per_group, metrics_dir / "hierarchy_groups.csv")
    write_csv(per_cat, metrics_dir / "hierarchy_per_category.csv")
    write_json(metrics_dir / "hierarchy.json", metrics)
    log.info("hierarchy on validation: flat %.4f, soft %.4f, hard %.4f", metrics["flat_product_accuracy"],
             metrics["hierarchical_product_accuracy"], metrics["hard_routing_product_accuracy"])
    log.info("per group:\n%s", per_group.to_string(index=False))
    return metrics
