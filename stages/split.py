"""Stage ``split``: product-level stratified train / val split that every later stage agrees on.

Reads   data/interim/train_products.parquet, data/processed/dedup/duplicates.parquet
Writes  data/processed/split.parquet (_id, category_id, fold), metrics/split.json
Params  split
"""
from pathlib import Path

from cdiscount.params import load_config
from cdiscount.runner import run_stage
from cdiscount.split import SplitConfig, run_split

PRODUCTS = Path("data/interim/train_products.parquet")
DUPLICATES = Path("data/processed/dedup/duplicates.parquet")
SPLIT = Path("data/processed/split.parquet")
METRICS = Path("metrics/split.json")


def main(args) -> None:
    cfg = load_config(SplitConfig, args.params)
    run_split(PRODUCTS, DUPLICATES, SPLIT, METRICS, cfg)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
