"""Stage ``submission``: the ensemble's test labels as the Kaggle CSV (and .csv.gz), validated before it counts.

Reads   data/preds/ensemble/test_labels.parquet, data/interim/test_products.parquet, data/interim/taxonomy.parquet
Writes  submissions/submission.csv, submissions/submission.csv.gz, metrics/submission.json
"""
import logging
from pathlib import Path

from cdiscount.atomic import write_json
from cdiscount.runner import run_stage
from cdiscount.submission import run_submission

LABELS = Path("data/preds/ensemble/test_labels.parquet")
TEST_PRODUCTS = Path("data/interim/test_products.parquet")
TAXONOMY = Path("data/interim/taxonomy.parquet")
OUT = Path("submissions/submission.csv")
OUT_GZ = Path("submissions/submission.csv.gz")  # written beside OUT: the file to upload
METRICS = Path("metrics/submission.json")


def main(args) -> None:
    summary = run_submission(LABELS, TEST_PRODUCTS, TAXONOMY, OUT)
    write_json(METRICS, summary)
    logging.getLogger("cdiscount").info("wrote %s and %s: %s (valid); upload with: cdiscount submit %s",
                                        OUT, OUT_GZ, summary, OUT_GZ)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
