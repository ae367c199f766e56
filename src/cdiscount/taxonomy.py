"""The 3-level category taxonomy and the category index used by every model.

Categories are keyed by ``category_id`` (level-3 names repeat under different ids) and
numbered 0..N-1 in taxonomy order (level1, level2, level3 names, then id), so that
neighbouring indices are similar categories: per-category plots read as a map of the catalogue.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

COLUMNS = ["category_id", "category_level1", "category_level2", "category_level3"]


def read_category_names(path: str | Path) -> pd.DataFrame:
    """Read Kaggle's ``category_names.csv`` keeping names verbatim (trailing spaces included)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise InputError(path, "empty file: no categories") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputError(path, f"not a readable CSV: {e}") from e
    if list(df.columns) != COLUMNS:
        raise InputError(path, f"expected columns {COLUMNS}, got {list(df.columns)}")
    if df.empty:  # every product would be 'unknown category' after hours of decoding
        raise InputError(path, "no categories (a header and no rows)")
    bad = ~df["category_id"].str.fullmatch(r"\d+")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(path, f"row {row + 2}: category_id {df['category_id'].iloc[row]!r} is not an integer")
    df["category_id"] = df["category_id"].astype("int64")
    dup = df["category_id"].duplicated()
    if dup.any():
        raise InputError(path, f"category_id {int(df['category_id'][dup].iloc[0])} appears twice")
    return df


def build_taxonomy(names: pd.DataFrame) -> pd.DataFrame:
    """Number categories in taxonomy order and attach level-1 / level-2 indices.

    Returns columns: category_id, idx, level1, level2, level3, level1_idx, level2_idx.
    """
    df = names.rename(
        columns={"category_level1": "level1", "category_level2": "level2", "category_level3": "level3"}
    )
    df = df.sort_values(["level1", "level2", "level3", "category_id"], kind="stable").reset_index(drop=True)
    df.insert(1, "idx", np.arange(len(df), dtype="int32"))
    df["level1_idx"] = pd.factorize(df["level1"])[0].astype("int16")
    df["level2_idx"] = pd.factorize(df["level1"] + "\x00" + df["level2"])[0].astype("int16")
    return df


def load_taxonomy(path: str | Path) -> pd.DataFrame:
    """Read a category file and return the indexed taxonomy."""
    return build_taxonomy(read_category_names(path))
