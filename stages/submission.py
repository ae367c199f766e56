"""Stage ``submission``: the ensemble's test labels as the Kaggle CSV (and .csv.gz), validated before it counts.

The rows and the check follow ``test.bson`` itself (one sequential scan of its ``_id``s), not
decode's table: a test product missing anywhere upstream fails here, never on Kaggle.

Reads   data/preds/ensemble/test_labels.parquet, ${data.raw_dir}/test.bson, data/interim/taxonomy.parquet
Writes  submissions/submission.csv, submissions/submission.csv.gz, metrics/submission.json
Params  data.raw_dir
"""
import logging
from pathlib import Path

from cdiscount.atomic import write_json
from cdiscount.raw_data import DataConfig
from cdiscount.params import load_config
from cdiscount.runner import run_stage
from cdiscount.submission import run_submission

LABELS = Path("data/preds/ensemble/test_labels.parquet")
TAXONOMY = Path("data/interim/taxonomy.parquet")
OUT = Path("submissions/submission.csv")
OUT_GZ = Path("submissions/submission.csv.gz")  # written beside OUT: the file to upload
METRICS = Path("metrics/submission.json")


def main(args) -> None:
    summary = run_submission(LABELS, load_config(DataConfig, args.params).test_bson, TAXONOMY, OUT)
    write_json(METRICS, summary)
    logging.getLogger("cdiscount").info("wrote %s and %s: %s (valid); upload with: cdiscount submit %s",
                                        OUT, OUT_GZ, summary, OUT_GZ)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
