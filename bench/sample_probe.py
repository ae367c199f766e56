"""How hard is the embedded sample? A linear probe on pixels (``python bench/sample_probe.py``).

Fits logistic regressions on 16x16 colour thumbnails of the first picture of each product of
``data/raw/sample`` (2/3 train, 1/3 held out) and prints level-1 accuracy, level-3 accuracy
inside each level-1 group, and the majority-class rate for comparison. A CNN does better than
this probe; the point is the shape: groups easy, categories inside a group hard, book and CD
genres at chance from pixels.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import bson
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def thumbs(docs: list[dict]) -> np.ndarray:
    out = []
    for d in docs:
        im = Image.open(io.BytesIO(d["imgs"][0]["picture"]))
        im.draft("RGB", (23, 23))
        out.append(np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.float32).ravel() / 255)
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw_dir", nargs="?", type=Path, default=Path("data/raw/sample"))
    args = ap.parse_args()
    cats = pd.read_csv(args.raw_dir / "category_names.csv", dtype={"category_id": "int64"},
                       keep_default_na=False).set_index("category_id")
    docs = list(bson.decode_file_iter(open(args.raw_dir / "train.bson", "rb")))
    x = StandardScaler().fit_transform(thumbs(docs))
    y3 = np.array([d["category_id"] for d in docs])
    y1 = cats.loc[y3, "category_level1"].to_numpy()
    n = len(docs) * 2 // 3

    def probe(rows: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        tr, te = rows[rows < n], rows[rows >= n]
        clf = LogisticRegression(max_iter=2000, C=0.1).fit(x[tr], y[tr])
        return clf.score(x[te], y[te]), pd.Series(y[te]).value_counts().iloc[0] / len(te)

    acc, base = probe(np.arange(len(docs)), y1)
    print(f"{'level-1 (all products)':34s} probe {acc:.3f}   majority {base:.3f}")
    for group in sorted(set(y1)):
        acc, base = probe(np.flatnonzero(y1 == group), y3)
        print(f"{'level-3 in ' + group[:23]:34s} probe {acc:.3f}   majority {base:.3f}")


if __name__ == "__main__":
    main()
