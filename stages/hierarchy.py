"""Stage ``hierarchy``: route the backbone's predictions through the group experts (soft and hard).

Reads   data/interim/taxonomy.parquet, data/processed/split.parquet, data/preds/backbone/<primary>/, models/specific/,
        metrics/fusion.json (reported alongside)
Writes  data/preds/hierarchy/ (val/test top-K), metrics/hierarchy.json, metrics/hierarchy_groups.csv,
        metrics/hierarchy_per_category.csv
Params  hierarchy, backbones.primary (whose predictions)
"""
from pathlib import Path

from cdiscount.hierarchy import HierarchyConfig, run_hierarchy
from cdiscount.params import load_config
from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage

TAXONOMY = Path("data/interim/taxonomy.parquet")
SPLIT = Path("data/processed/split.parquet")
FLAT = Path("data/preds/backbone")  # <primary>/
SPECIFIC = Path("models/specific")
FUSION_METRICS = Path("metrics/fusion.json")
OUT = Path("data/preds/hierarchy")
METRICS = Path("metrics")


def main(args) -> None:
    cfg = load_config(HierarchyConfig, args.params)
    run_hierarchy(cfg, taxonomy=TAXONOMY, split_path=SPLIT, flat=FLAT / primary_name(args.params), specific=SPECIFIC,
                  fusion_metrics=FUSION_METRICS, out_dir=OUT, metrics_dir=METRICS, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
