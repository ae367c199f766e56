"""Stage ``baseline``: the organiser's image-similarity benchmark (perceptual hash, nearest training picture).

Reads   data/interim/, data/processed/split.parquet
Writes  metrics/baseline.json
Params  baseline
"""
from pathlib import Path

from cdiscount.baseline import BaselineConfig, run_baseline
from cdiscount.params import load_config
from cdiscount.runner import run_stage

INTERIM = Path("data/interim")
SPLIT = Path("data/processed/split.parquet")
METRICS = Path("metrics/baseline.json")


def main(args) -> None:
    cfg = load_config(BaselineConfig, args.params)
    run_baseline(INTERIM, SPLIT, METRICS, cfg, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
