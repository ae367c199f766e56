"""The ``data`` section: the one folder of Kaggle-format files the pipeline reads.

Kept apart from :mod:`cdiscount.decode` so that a stage reading the raw files (``submission``
checks against ``test.bson`` itself) does not depend on the decoder's code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .params import Section

#: The files of the Kaggle competition, all in ``data.raw_dir``.
TRAIN_BSON, TEST_BSON, CATEGORY_NAMES = "train.bson", "test.bson", "category_names.csv"


@dataclass(frozen=True)
class DataConfig(Section):
    """The ``data`` section: where the Kaggle files are."""

    SECTION = "data"
    raw_dir: str  # folder with train.bson, test.bson, category_names.csv

    def check(self) -> None:
        self.require("raw_dir", bool(self.raw_dir.strip()), "a folder holding train.bson, test.bson and "
                     "category_names.csv")

    @property
    def test_bson(self) -> Path:
        return Path(self.raw_dir) / TEST_BSON
