"""Stage ``dedup``: exact duplicate pictures (MD5), placeholders, blanks and the test -> train lookup.

Reads   data/interim/
Writes  data/processed/dedup/{hashes,votes,duplicates,test_matches}.parquet, metrics/dedup.json
Params  dedup
"""
from pathlib import Path

from cdiscount.dedup import DedupConfig, run_dedup
from cdiscount.params import load_config
from cdiscount.runner import run_stage

INTERIM = Path("data/interim")
DEDUP = Path("data/processed/dedup")
METRICS = Path("metrics/dedup.json")


def main(args) -> None:
    cfg = load_config(DedupConfig, args.params)
    run_dedup(INTERIM, DEDUP, METRICS, cfg, progress=args.progress)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, streaming=True))
