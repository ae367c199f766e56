"""Stage ``train_backbone`` end to end: train (or resume), infer everything once, evaluate."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import distributed, paths
from .atomic import write_json
from .evaluation import evaluate_products, write_csv
from .infer import run_inference
from .params import config_from
from .train import TrainConfig, load_model, train_backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """The ``predict`` section: how the trained backbone is run over every picture."""

    top_k: int = 20
    flip_tta: bool = True
    batch_size: int = 128
    shard_rows: int = 1_000_000
    workers: int = 2


def run_backbone(train_params: dict[str, Any], predict_params: dict[str, Any], *, progress: bool = True) -> dict:
    cfg = TrainConfig.from_params(train_params)
    pcfg = config_from(PredictConfig, predict_params, "predict")
    train_backbone(cfg, paths.INTERIM, paths.SPLIT, paths.BACKBONE, paths.CHECKPOINTS, paths.LIVE_TRAIN,
                   progress=progress)
    ctx = distributed.setup(cfg.device)
    if not ctx.is_main:
        return {}
    model, blob = load_model(paths.BACKBONE, ctx.device)
    run_inference(model, blob, paths.INTERIM, paths.FEATURES, paths.PREDS / "backbone", top_k=pcfg.top_k,
                  flip_tta=pcfg.flip_tta, batch_size=pcfg.batch_size, workers=pcfg.workers,
                  shard_rows=pcfg.shard_rows, amp=cfg.amp, progress=progress)
    return evaluate_component(paths.PREDS / "backbone", "backbone")


def evaluate_component(pred_dir: Path, name: str) -> dict[str, Any]:
    """Validation metrics of a component's train-set predictions; writes metrics/<name>*.{json,csv}."""
    tax = pd.read_parquet(paths.INTERIM / "taxonomy.parquet")
    split = pd.read_parquet(paths.SPLIT)
    val = split[split["fold"] == "val"]
    preds = pd.read_parquet(pred_dir / "train_products.parquet")
    images = pd.read_parquet(pred_dir / "train_images.parquet") if (pred_dir / "train_images.parquet").exists() \
        else None
    metrics, per_cat, hist = evaluate_products(preds, val, tax, images[images["_id"].isin(val["_id"])]
                                               if images is not None else None)
    baseline = paths.METRICS / "baseline.json"
    write_json(paths.METRICS / f"{name}.json", metrics)
    write_csv(per_cat, paths.METRICS / f"{name}_per_category.csv")
    write_csv(hist, paths.METRICS / f"{name}_distance.csv")
    log.info("%s on validation: %s%s", name, metrics, f" (baseline: {baseline.read_text().strip()})"
             if baseline.exists() else "")
    return metrics
