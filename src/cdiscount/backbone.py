"""Stage ``train_backbone``: its inference settings and the evaluation of a component's predictions."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import write_json
from .evaluation import evaluate_file, write_csv
from .params import Section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig(Section):
    """The ``predict`` section: how the trained backbone is run over every picture."""

    SECTION = "predict"
    top_k: int
    flip_tta: bool
    batch_size: int
    shard_rows: int  # feature rows per .npy shard
    workers: int

    def check(self) -> None:
        self.require("top_k", 1 <= self.top_k <= 1000, "1 to 1000 classes kept per picture and product")
        self.require("batch_size", self.batch_size >= 1, "at least 1 picture per batch")
        self.require("shard_rows", self.shard_rows >= 1, "at least 1 feature row per shard")
        self.require("workers", self.workers >= 0, "0 (load in the main process) or a number of processes")


def evaluate_component(pred_dir: Path, taxonomy: Path, split_path: Path, metrics_dir: Path, name: str
                       ) -> dict[str, Any]:
    """Validation metrics of a component's train-set predictions; writes ``metrics_dir/<name>*.{json,csv}``."""
    tax = pd.read_parquet(taxonomy)
    split = pd.read_parquet(split_path, columns=["_id", "fold", "category_id"])
    val = split[split["fold"] == "val"]
    images = pred_dir / "train_images.parquet"
    metrics, per_cat, hist = evaluate_file(pred_dir / "train_products.parquet", val, tax,
                                           images if images.exists() else None)
    write_json(metrics_dir / f"{name}.json", metrics)
    write_csv(per_cat, metrics_dir / f"{name}_per_category.csv")
    write_csv(hist, metrics_dir / f"{name}_distance.csv")
    log.info("%s on validation: %s", name, metrics)
    return metrics
