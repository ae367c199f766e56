"""Stage ``sample``: a deterministic mini-Cdiscount in the exact Kaggle format.

Writes ``train.bson``, ``test.bson`` and ``category_names.csv`` (real ids and names from the
official file) plus ``test_solution.csv``, the hidden test labels, so that a submission made
on the sample can be scored. The data carries the structure of the real catalogue that every
later stage exploits: a long-tailed category distribution, easy level-1 groups with
look-alike level-3 categories inside, book and CD covers whose genre only the printed title
reveals, placeholder pictures shared across categories, one picture repeated through a
category, and test products whose pictures also appear in train.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import bson
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import ConfigError
from ..params import Section
from ..taxonomy import read_category_names
from . import draw
from .vocabulary import FILLER_WORDS, GENRE_WORDS, NAMES

log = logging.getLogger(__name__)

#: Share of products with 1, 2, 3, 4 pictures (the real file: 62 % / 19 % / 8 % / 11 %).
IMAGES_PER_PRODUCT = np.array([0.62, 0.19, 0.08, 0.11])


@dataclass(frozen=True)
class SampleConfig(Section):
    """Sizes and difficulty knobs (the ``sample`` section of params.yaml)."""

    SECTION = "sample"
    seed: int
    train_products: int
    test_products: int
    zipf_exponent: float  # category frequency ~ 1 / rank**a
    min_products_per_category: int
    fine_noise: float  # spread of a product's style around its category's (0..1 style units)
    text_fraction: float  # share of book / CD covers with a legible title
    placeholder_rate: float  # per picture: replaced by a placeholder shared across categories
    train_relist_fraction: float  # train products re-listing an earlier product's pictures
    test_relist_fraction: float  # test products re-listing a train product's pictures
    instructions_category: int  # CARTOUCHE IMPRIMANTE: sellers repeat a compatibility sheet
    instructions_rate: float
    jpeg_quality: int

    def check(self) -> None:
        self.require("seed", self.seed >= 0, "an integer >= 0")
        self.require("train_products", self.train_products >= 1, ">= 1")
        self.require("test_products", self.test_products >= 1, ">= 1")
        self.require("min_products_per_category", self.min_products_per_category >= 1, ">= 1")
        self.require("zipf_exponent", self.zipf_exponent >= 0, ">= 0")
        for key in ("fine_noise", "text_fraction", "placeholder_rate", "train_relist_fraction",
                    "test_relist_fraction", "instructions_rate"):
            self.require(key, 0 <= getattr(self, key) <= 1, "a fraction from 0 to 1")
        self.require("jpeg_quality", 1 <= self.jpeg_quality <= 100, "1 to 100")


def sample_categories() -> pd.DataFrame:
    """The taxonomy subset of the sample: 36 real categories in 7 level-1 groups."""
    with resources.as_file(resources.files("cdiscount") / "data" / "sample_categories.csv") as p:
        return read_category_names(p)


@dataclass
class _Product:
    category_id: int
    pictures: list[bytes]
    fresh: bool = True


class _Maker:
    """Draws products of each category; holds the per-category style prototypes."""

    def __init__(self, cats: pd.DataFrame, cfg: SampleConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.level1 = dict(zip(cats["category_id"], cats["category_level1"]))
        self.proto = {cid: rng.uniform(0.1, 0.9, size=4) for cid in cats["category_id"]}
        q = cfg.jpeg_quality
        self.placeholders = [draw.to_jpeg(draw.placeholder_unavailable(), q), draw.to_jpeg(draw.placeholder_white(), q)]
        self.instructions = draw.to_jpeg(draw.instructions_sheet(), q)

    def make(self, cid: int) -> _Product:
        cfg, rng = self.cfg, self.rng
        style = draw.style_for(self.level1[cid])
        if style.text:  # covers look alike whatever the genre: the style carries no label
            theta = rng.uniform(0, 1, size=4)
        else:
            theta = np.clip(self.proto[cid] + rng.normal(0, cfg.fine_noise, size=4), 0, 1)
        title = author = None
        if style.text and rng.random() < cfg.text_fraction:
            words = list(rng.choice(GENRE_WORDS[cid], size=int(rng.integers(1, 3)), replace=False))
            if rng.random() < 0.5:
                words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(FILLER_WORDS)))
            title = words
            author = str(rng.choice(NAMES))
        n = int(rng.choice(4, p=IMAGES_PER_PRODUCT)) + 1
        pictures = []
        for i in range(n):
            if rng.random() < cfg.placeholder_rate:
                pictures.append(self.placeholders[int(rng.random() < 0.3)])
                continue
            back = style.text and i > 0 and rng.random() < 0.5
            img = draw.draw_view(style, theta, rng, title=title, author=author, back=back)
            pictures.append(draw.to_jpeg(img, cfg.jpeg_quality))
        if cid == cfg.instructions_category and len(pictures) < 4 and rng.random() < cfg.instructions_rate:
            pictures.append(self.instructions)
        return _Product(cid, pictures)


def _category_counts(ids: np.ndarray, total: int, cfg: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like counts with a floor, ranks shuffled so the head is not one group."""
    k = len(ids)
    if total < k * cfg.min_products_per_category:
        raise ValueError(f"sample.train_products={total} is below {k} categories x "
                         f"min_products_per_category={cfg.min_products_per_category}")
    ranks = rng.permutation(k) + 1
    w = 1.0 / ranks ** cfg.zipf_exponent
    w /= w.sum()
    return cfg.min_products_per_category + rng.multinomial(total - k * cfg.min_products_per_category, w)


def generate_sample(out_dir: str | Path, cfg: SampleConfig, progress: bool = True) -> dict[str, Any]:
    """Write the sample folder atomically; returns a summary of what it holds."""
    rng = np.random.default_rng(cfg.seed)
    cats = sample_categories()
    if cfg.instructions_category not in set(cats["category_id"]):
        raise ConfigError(f"sample.instructions_category {cfg.instructions_category} is not a sample category")
    ids = cats["category_id"].to_numpy()
    maker = _Maker(cats, cfg, rng)
    counts = _category_counts(ids, cfg.train_products, cfg, rng)
    weights = counts / counts.sum()
    order = rng.permutation(np.repeat(ids, counts))
    bar = tqdm(total=cfg.train_products + cfg.test_products, desc="sample products", disable=not progress)

    train: list[_Product] = []
    by_cat: dict[int, list[int]] = {}
    for cid in order:
        cid = int(cid)
        earlier = by_cat.setdefault(cid, [])
        if earlier and rng.random() < cfg.train_relist_fraction:
            src = train[int(rng.choice(earlier))]
            product = _Product(cid, list(src.pictures), fresh=False)
        else:
            product = maker.make(cid)
        earlier.append(len(train))
        train.append(product)
        bar.update()
    test: list[_Product] = []
    for _ in range(cfg.test_products):
        if rng.random() < cfg.test_relist_fraction:
            src = train[int(rng.integers(len(train)))]
            test.append(_Product(src.category_id, list(src.pictures), fresh=False))
        else:
            test.append(maker.make(int(rng.choice(ids, p=weights))))
        bar.update()
    bar.close()

    # Kaggle's _ids: increasing with gaps, train and test interleaved in one id space.
    n = len(train) + len(test)
    all_ids = np.cumsum(rng.integers(1, 4, size=n)) - 1
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, size=len(test), replace=False)] = True
    train_ids, test_ids = all_ids[~is_test], all_ids[is_test]

    with atomic_dir(out_dir) as tmp:
        with open(tmp / "train.bson", "wb") as f:
            for pid, p in zip(train_ids, train):
                f.write(bson.encode({"_id": int(pid), "imgs": [{"picture": b} for b in p.pictures],
                                     "category_id": p.category_id}))
        with open(tmp / "test.bson", "wb") as f:
            for pid, p in zip(test_ids, test):
                f.write(bson.encode({"_id": int(pid), "imgs": [{"picture": b} for b in p.pictures]}))
        cats.to_csv(tmp / "category_names.csv", index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        pd.DataFrame({"_id": test_ids, "category_id": [p.category_id for p in test]}).to_csv(
            tmp / "test_solution.csv", index=False, lineterminator="\n")
    summary = {
        "train_products": len(train),
        "test_products": len(test),
        "train_images": sum(len(p.pictures) for p in train),
        "test_images": sum(len(p.pictures) for p in test),
        "categories": len(ids),
        "level1_groups": int(cats["category_level1"].nunique()),
        "largest_category": int(counts.max()),
        "smallest_category": int(counts.min()),
        "test_relisted": sum(not p.fresh for p in test),
        "train_relisted": sum(not p.fresh for p in train),
    }
    log.info("sample written to %s: %s", out_dir, summary)
    return summary
