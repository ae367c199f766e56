"""How hard is the embedded sample? A linear probe on pixels (``python bench/sample_probe.py``).

Fits logistic regressions on 16x16 colour thumbnails of the first picture of each product of
``data/raw/sample`` (2/3 train, 1/3 held out) and prints level-1 accuracy, level-3 accuracy
inside each level-1 group, and the majority-class rate for comparison. A CNN does better than
this probe; the point is the shape: groups easy, categories inside a group hard, book and CD
genres at chance from pixels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import bson
import numpy as np

from cdiscount.sample.probe import probe, thumbnails
from cdiscount.taxonomy import read_category_names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw_dir", nargs="?", type=Path, default=Path("data/raw/sample"))
    args = ap.parse_args()
    cats = read_category_names(args.raw_dir / "category_names.csv").set_index("category_id")
    docs = list(bson.decode_file_iter(open(args.raw_dir / "train.bson", "rb")))
    x = thumbnails(docs)
    y3 = np.array([d["category_id"] for d in docs])
    y1 = cats.loc[y3, "category_level1"].to_numpy()
    train = np.arange(len(docs)) < len(docs) * 2 // 3
    acc, base = probe(x, y1, train)
    print(f"{'level-1 (all products)':34s} probe {acc:.3f}   majority {base:.3f}")
    for group in sorted(set(y1)):
        rows = y1 == group
        acc, base = probe(x[rows], y3[rows], train[rows])
        print(f"{'level-3 in ' + group[:23]:34s} probe {acc:.3f}   majority {base:.3f}")


if __name__ == "__main__":
    main()
