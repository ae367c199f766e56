"""A linear probe of how much of the label the pixels carry (used to measure the sample's difficulty)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def thumbnails(docs: list[dict], size: int = 16) -> np.ndarray:
    """Flattened ``size`` x ``size`` RGB thumbnails (0..1) of each product's first picture."""
    out = []
    for d in docs:
        im = Image.open(io.BytesIO(d["imgs"][0]["picture"]))
        im.draft("RGB", (size + 7, size + 7))  # JPEG DCT scaling: decode small directly
        out.append(np.asarray(im.convert("RGB").resize((size, size)), dtype=np.float32).ravel() / 255)
    return np.stack(out)


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """Held-out accuracy of a logistic regression fitted on ``train`` rows, and the majority rate."""
    x = StandardScaler().fit(x[train]).transform(x)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(x[train], y[train])
    held = ~train
    return float(clf.score(x[held], y[held])), float(pd.Series(y[held]).value_counts(normalize=True).iloc[0])
