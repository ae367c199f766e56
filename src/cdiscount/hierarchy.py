"""Stage ``hierarchy``: route the flat backbone's predictions through the group experts.

Reference report 001 decided the level-1 group first and then asked that group's specific
classifier (hard routing); a wrong coarse decision then cannot be undone. Soft routing (the
default written for the ensemble) gives each group its flat probability mass and lets the expert
redistribute it inside the group, so the flat model stays in charge of *which* group. Both are
measured on validation against the flat model, with the product fusion head alongside.

The flat predictions are top-K; each chunk of products is densified (the missing mass spread
evenly over the classes outside the top K) only for the few thousand products in flight.
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
from .params import Section
from .routing import group_mass, hard_route, soft_route
from .topk import PRODUCT_SCHEMA, densify, product_table, read_topk, topk

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
    """One group expert's product distributions over its categories (``classes`` = global idx)."""

    group: str
    classes: np.ndarray
    ids: dict[str, pd.Index]
    probs: dict[str, np.ndarray]

    def rows_for(self, split: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows of ``ids`` this expert scored, the matching rows of its probabilities)."""
        pos = self.ids[split].get_indexer(ids)
        have = np.flatnonzero(pos >= 0)
        return have, pos[have]


def load_experts(specific_dir: Path) -> list[ExpertOutput]:
    """Every trained slot under ``models/specific`` (empty slots are skipped)."""
    experts = []
    for slot in sorted(p for p in specific_dir.iterdir() if p.is_dir()):
        meta = json.loads((slot / "meta.json").read_text())
        if meta.get("group") is None:
            continue
        z = np.load(slot / "preds.npz")
        experts.append(ExpertOutput(meta["group"], z["classes"].astype(np.int64),
                                    {s: pd.Index(z[f"{s}_ids"]) for s in ("val", "test")},
                                    {s: z[f"{s}_probs"] for s in ("val", "test")}))
    return experts


def route_chunk(flat: np.ndarray, ids: np.ndarray, experts: list[ExpertOutput], split: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Soft- and hard-routed [N, C] distributions of one chunk.

    A product an expert did not score (its group mass was below ``specific.min_mass``) keeps the
    flat distribution inside that group, so routing leaves it unchanged.
    """
    groups = [e.classes for e in experts]
    mass = group_mass(flat, groups)
    inside = []
    for j, e in enumerate(experts):
        within = flat[:, e.classes] / np.maximum(mass[:, j : j + 1], 1e-12)
        have, rows = e.rows_for(split, ids)
        within[have] = e.probs[split][rows]
        inside.append(within)
    return soft_route(flat, groups, inside), hard_route(flat, groups, inside)


def run_hierarchy(cfg: HierarchyConfig, *, taxonomy: Path, split_path: Path, flat: Path, specific: Path,
                  fusion_metrics: Path, out_dir: Path, metrics_dir: Path, progress: bool) -> dict[str, Any]:
    tax = pd.read_parquet(taxonomy).sort_values("idx")
    n_classes = len(tax)
    experts = load_experts(specific)
    split = pd.read_parquet(split_path)
    val_ids = split.loc[split["fold"] == "val", "_id"].to_numpy()
    flat_val = read_topk(flat / "train_products.parquet", val_ids)
    flat_test = read_topk(flat / "test_products.parquet")
    with atomic_dir(out_dir) as tmp:
        val_top1 = _route_split(flat_val, experts, "val", n_classes, cfg, tmp / "val_products.parquet", progress)
        _route_split(flat_test, experts, "test", n_classes, cfg, tmp / "test_products.parquet", progress)
    truth = pd.Series(flat_val[0]).map(split.set_index("_id")["category_id"]).map(tax.set_index("category_id")["idx"])
    return evaluate_hierarchy(truth.to_numpy(), val_top1, experts, tax, fusion_metrics, metrics_dir)


def _route_split(flat: tuple[np.ndarray, np.ndarray, np.ndarray], experts: list[ExpertOutput], split: str,
                 n_classes: int, cfg: HierarchyConfig, out: Path, progress: bool) -> dict[str, np.ndarray]:
    """Write the chosen routing's top-K for ``flat``'s products (``_id``, top_idx, top_prob arrays);
    return the top-1 of each routing."""
    all_ids, all_idx, all_prob = flat
    top1: dict[str, list[np.ndarray]] = {"flat": [], "soft": [], "hard": []}
    with pq.ParquetWriter(out, PRODUCT_SCHEMA) as w:
        for b in tqdm(range(0, len(all_ids), cfg.chunk), desc=f"hierarchy {split}", unit="chunk",
                      disable=not progress):
            ids = all_ids[b : b + cfg.chunk]
            dense = densify(all_idx[b : b + cfg.chunk], all_prob[b : b + cfg.chunk], n_classes)
            soft, hard = route_chunk(dense, ids, experts, split)
            for name, probs in (("flat", dense), ("soft", soft), ("hard", hard)):
                top1[name].append(probs.argmax(axis=1))
            idx, prob = topk(torch.from_numpy(soft if cfg.routing == "soft" else hard), cfg.top_k)
            w.write_table(product_table(ids, idx, prob))
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
