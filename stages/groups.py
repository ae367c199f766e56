"""Stage ``groups``: which sets of categories get a specific classifier (report 001 bands or report 000 sets).

Reads   data/interim/taxonomy.parquet, data/processed/split.parquet,
        data/preds/backbone/<primary>/train_products.parquet
Writes  data/processed/groups.json (group -> category ids), metrics/groups.json, metrics/groups.csv
Params  groups, backbones.primary (whose predictions)
"""
from pathlib import Path

from cdiscount.groups import GroupsConfig, run_groups
from cdiscount.params import load_config
from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage

TAXONOMY = Path("data/interim/taxonomy.parquet")
SPLIT = Path("data/processed/split.parquet")
FLAT = Path("data/preds/backbone")  # <primary>/train_products.parquet
GROUPS = Path("data/processed/groups.json")
METRICS = Path("metrics")


def main(args) -> None:
    cfg = load_config(GroupsConfig, args.params)
    run_groups(cfg, TAXONOMY, SPLIT, FLAT / primary_name(args.params) / "train_products.parquet", GROUPS, METRICS)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
