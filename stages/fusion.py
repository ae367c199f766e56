"""Stage ``fusion``: product-level head over all pictures of a product, trained on cached features.

Reads   data/interim/taxonomy.parquet, data/interim/train_products.parquet, data/processed/split.parquet,
        data/features/<primary>/, data/preds/backbone/<primary>/train_products.parquet
Writes  data/preds/fusion/ (val/test top-K, fusion.pt), metrics/fusion.json, metrics/fusion_per_category.csv
Params  fusion, backbones.primary (whose features)
"""
from pathlib import Path

from cdiscount.params import load_config
from cdiscount.product_fusion import FusionConfig, run_fusion
from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage

TAXONOMY = Path("data/interim/taxonomy.parquet")
PRODUCTS = Path("data/interim/train_products.parquet")
SPLIT = Path("data/processed/split.parquet")
FEATURES = Path("data/features")  # <primary>/
FLAT = Path("data/preds/backbone")  # <primary>/train_products.parquet
OUT = Path("data/preds/fusion")
METRICS = Path("metrics")


def main(args) -> None:
    cfg = load_config(FusionConfig, args.params)
    primary = primary_name(args.params)
    run_fusion(cfg, taxonomy=TAXONOMY, products=PRODUCTS, split_path=SPLIT, features=FEATURES / primary,
               flat_train=FLAT / primary / "train_products.parquet",
               out_dir=OUT, metrics_dir=METRICS, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
