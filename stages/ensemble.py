"""Stage ``ensemble``: weighted mix of every component's top-K (weights fitted on validation) + duplicate override.

Reads   data/interim/taxonomy.parquet, data/interim/test_products.parquet, data/processed/split.parquet,
        data/processed/dedup/, data/preds/backbone/<name>/ (every entry of backbones.entries),
        data/preds/{fusion,hierarchy,ocr}/ (a missing component is left out)
Writes  data/preds/ensemble/ (val/test top-K, test_labels.parquet), metrics/ensemble.json
Params  ensemble, backbones.entries (which backbones are components)
"""
from pathlib import Path

from cdiscount.backbones import entry_names
from cdiscount.ensemble import EnsembleConfig, run_ensemble
from cdiscount.params import load_config
from cdiscount.runner import run_stage

TAXONOMY = Path("data/interim/taxonomy.parquet")
TEST_PRODUCTS = Path("data/interim/test_products.parquet")
SPLIT = Path("data/processed/split.parquet")
DEDUP = Path("data/processed/dedup")
PREDS = Path("data/preds")
OUT = Path("data/preds/ensemble")
METRICS = Path("metrics/ensemble.json")


def main(args) -> None:
    cfg = load_config(EnsembleConfig, args.params)
    run_ensemble(cfg, taxonomy=TAXONOMY, test_products=TEST_PRODUCTS, split_path=SPLIT, dedup=DEDUP, preds=PREDS,
                 out_dir=OUT, metrics_path=METRICS, progress=args.progress,
                 backbones=entry_names(args.params))


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
