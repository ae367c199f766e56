"""Stage ``specific@<slot>``: train the experts of one slot's groups (slot i of S: groups i, i+S, ...) on cached features.

Reads   data/processed/groups.json, data/interim/taxonomy.parquet, data/interim/train_images.parquet,
        data/processed/split.parquet, data/features/<primary>/, data/preds/backbone/<primary>/
Writes  models/specific/<slot>/ (meta.json; per group <rank>/: expert.pkl, val/test_products.parquet top-K, meta.json)
Params  specific (the common keys and specific.per_slot.<slot>), backbones.primary (whose features)
"""
from pathlib import Path

from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage
from cdiscount.specific import run_specific, slot_config

GROUPS = Path("data/processed/groups.json")
TAXONOMY = Path("data/interim/taxonomy.parquet")
TRAIN_IMAGES = Path("data/interim/train_images.parquet")
SPLIT = Path("data/processed/split.parquet")
FEATURES = Path("data/features")  # <primary>/
FLAT = Path("data/preds/backbone")  # <primary>/
OUT = Path("models/specific")


def options(ap) -> None:
    ap.add_argument("slot", help="a name from specific.slots: the expert of that slot's group")


def main(args) -> None:
    slots, cfg = slot_config(args.params, args.slot)
    primary = primary_name(args.params)
    run_specific(args.slot, slots, cfg, groups_path=GROUPS, taxonomy=TAXONOMY, train_images=TRAIN_IMAGES,
                 split_path=SPLIT, features=FEATURES / primary, flat=FLAT / primary, out=OUT / args.slot,
                 progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, options=options))
