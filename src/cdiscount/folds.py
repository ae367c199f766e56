"""The folds of ``split.parquet`` and reading one of them without the rest.

``split.parquet`` lists every training product with its fold (7 M rows for the real data); most
stages need one fold (the validation tenth), so they read it in batches, filtered, rather than
loading the whole table into pandas.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .parquet_file import parquet_file

FOLDS = ("train", "val", "unused")


def fold_products(split_path: str | Path, fold: str, columns: tuple[str, ...] = ("_id", "category_id"),
                  batch_rows: int = 1 << 18) -> pd.DataFrame:
    """``columns`` of one fold's products, in split order, read in batches: the split lists every
    training product (7 M), a stage usually needs one fold of it (the validation tenth)."""
    parts = []
    for b in parquet_file(split_path).iter_batches(batch_size=batch_rows, columns=[*dict.fromkeys([*columns, "fold"])]):
        f = b.column(b.schema.get_field_index("fold"))
        keep = pc.equal(f.cast(pa.string()) if pa.types.is_dictionary(f.type) else f, fold)
        parts.append(pa.Table.from_batches([b]).filter(keep).select(list(columns)))
    if not parts:
        return pd.read_parquet(split_path, columns=list(columns))
    return pa.concat_tables(parts).to_pandas()
