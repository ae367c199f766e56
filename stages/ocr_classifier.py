"""Stage ``ocr_classifier``: TF-IDF text model on the OCR text, fused with the image model, as a top-K component.

Reads   data/ocr/, data/interim/, data/processed/split.parquet, data/preds/backbone/<primary>/
Writes  data/preds/ocr/ (val/test top-K), metrics/ocr_classifier.json
Params  ocr.level1, ocr_classifier, backbones.primary (the image model fused with the text)
"""
from pathlib import Path

from cdiscount.ocr.stage import OcrClassifierConfig, OcrConfig, run_ocr_classifier
from cdiscount.params import load_config
from cdiscount.backbones import primary_name
from cdiscount.runner import run_stage

OCR_DIR = Path("data/ocr")
INTERIM = Path("data/interim")
SPLIT = Path("data/processed/split.parquet")
FLAT = Path("data/preds/backbone")  # <primary>/
OUT = Path("data/preds/ocr")
METRICS = Path("metrics/ocr_classifier.json")


def main(args) -> None:
    level1 = load_config(OcrConfig, args.params).level1
    cfg = load_config(OcrClassifierConfig, args.params)
    run_ocr_classifier(level1, cfg, cache=OCR_DIR / "text.parquet", interim=INTERIM, split_path=SPLIT,
                       flat=FLAT / primary_name(args.params),
                       out_dir=OUT, metrics_path=METRICS)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
