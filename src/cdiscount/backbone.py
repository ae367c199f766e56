"""Stage ``train_backbone@<name>``: one entry's train / predict configs, inference settings, evaluation."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import write_json
from .backbones import entry_overrides, load_backbones
from .errors import ConfigError
from .evaluation import evaluate_file, write_csv
from .params import Section, build

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
    features: bool  # false: top-K only, no feature shards (~39 GB per backbone at real scale)

    def check(self) -> None:
        self.require("top_k", 1 <= self.top_k <= 1000, "1 to 1000 classes kept per picture and product")
        self.require("batch_size", self.batch_size >= 1, "at least 1 picture per batch")
        self.require("shard_rows", self.shard_rows >= 1, "at least 1 feature row per shard")
        self.require("workers", self.workers >= 0, "0 (load in the main process) or a number of processes")


def entry_configs(params: dict[str, Any], name: str):
    """``(TrainConfig, PredictConfig)`` of backbone ``name``: the shared ``train`` / ``predict`` sections with
    the entry's overrides on top, every key checked (errors name ``backbones.entries.<name>.<section>.key``)."""
    from .train import TrainConfig

    entries = params.get("backbones", {}).get("entries") if isinstance(params.get("backbones"), dict) else None
    if not isinstance(entries, dict):
        load_backbones(params)  # the error says what is wrong with the section
    over = entry_overrides(entries, name)
    out = []
    for cls in (TrainConfig, PredictConfig):
        if not isinstance(params.get(cls.SECTION), dict):
            raise ConfigError(f"{cls.SECTION}: section missing or not a mapping (got {params.get(cls.SECTION)!r})")
        build(cls, params[cls.SECTION])  # the shared defaults are valid on their own
        out.append(build(cls, {**params[cls.SECTION], **over[cls.SECTION]},
                         f"backbones.entries.{name}.{cls.SECTION}") if over[cls.SECTION]
                   else build(cls, params[cls.SECTION]))
    return tuple(out)


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
