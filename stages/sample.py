"""Stage ``sample``: generate the embedded mini-Cdiscount (Kaggle format) from params ``sample``.

Reads   nothing but params (the generator's category list ships in the package)
Writes  data/raw/sample/{train.bson,test.bson,category_names.csv}, metrics/sample.json
"""
from pathlib import Path

from cdiscount.atomic import write_json
from cdiscount.params import load_config
from cdiscount.runner import run_stage
from cdiscount.sample import SampleConfig, generate_sample

OUT = Path("data/raw/sample")
METRICS = Path("metrics/sample.json")


def main(args) -> None:
    cfg = load_config(SampleConfig, args.params)
    write_json(METRICS, generate_sample(OUT, cfg, progress=args.progress))


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
