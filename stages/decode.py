"""Stage ``decode``: index the Kaggle BSON files of ``data.raw_dir``: offsets, MD5s, taxonomy.

Reads   ${data.raw_dir}/{train.bson,test.bson,category_names.csv}
Writes  data/interim/ ({train,test}_{products,images,skipped}.parquet, taxonomy.parquet, sources.json),
        metrics/decode.json, metrics/decode_categories.csv
Params  data.raw_dir, decode
"""
from pathlib import Path

from cdiscount.decode import DecodeConfig, run_decode
from cdiscount.raw_data import DataConfig
from cdiscount.params import load_config
from cdiscount.runner import run_stage

INTERIM = Path("data/interim")
METRICS = Path("metrics")


def main(args) -> None:
    data = load_config(DataConfig, args.params)
    cfg = load_config(DecodeConfig, args.params)
    run_decode(Path(data.raw_dir), INTERIM, METRICS, cfg, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
