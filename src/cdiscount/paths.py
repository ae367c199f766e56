"""Where each stage reads and writes, relative to the repository root (mirrors dvc.yaml)."""
from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path("data/raw/sample")
INTERIM = Path("data/interim")
DEDUP = Path("data/processed/dedup")
SPLIT = Path("data/processed/split.parquet")
METRICS = Path("metrics")
BACKBONE = Path("models/backbone.pt")
CHECKPOINTS = Path("models/checkpoints")
LIVE_TRAIN = Path("dvclive/train")
FEATURES = Path("data/features")
PREDS = Path("data/preds")
GROUPS = Path("data/processed/groups.json")
SPECIFIC = Path("models/specific")
SUBMISSION = Path("submissions/submission.csv")
