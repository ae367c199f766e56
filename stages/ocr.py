"""Stage ``ocr``: read the covers of the products in the ``ocr.level1`` groups; text cached per picture MD5.

Train and validation products are selected by their true category, every product also by the
backbone's top-1. The cache is persistent: a re-run reads only pictures it has not read.

Reads   data/interim/, data/preds/backbone/<primary>/ (product top-K), the source BSON files named in sources.json
Writes  data/ocr/text.parquet (persistent), metrics/ocr.json
Params  ocr, backbones.primary (whose predictions route products)
"""
from pathlib import Path

from cdiscount.ocr.stage import OcrConfig, run_ocr
from cdiscount.params import load_config
from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage

INTERIM = Path("data/interim")
FLAT = Path("data/preds/backbone")  # <primary>/
OCR_DIR = Path("data/ocr")
METRICS = Path("metrics/ocr.json")


def main(args) -> None:
    cfg = load_config(OcrConfig, args.params)
    run_ocr(cfg, interim=INTERIM, flat=FLAT / primary_name(args.params), cache=OCR_DIR / "text.parquet",
            metrics_path=METRICS, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
