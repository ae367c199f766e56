"""Parquet files whose row groups are hash partitions: every row of a hash lies in one row group.

Why: ``dedup`` already partitions the duplicated pictures by hash and writes ``duplicates.parquet`` one
partition at a time. Saying so in the file (schema metadata) lets a per-hash reader
(:func:`cdiscount.lookup.votes_from_dedup`) take the row groups as they are instead of partitioning
the table a second time; a file without the marker (written another way) is partitioned as before.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

#: The schema metadata that says so.
MARKER = {b"cdiscount.row_groups": b"hash partitions"}


def marked(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the marker (for a writer that writes one hash partition per row group)."""
    return schema.with_metadata({**(schema.metadata or {}), **MARKER})


def is_hash_partitioned(source: pq.ParquetFile) -> bool:
    """Whether ``source``'s writer said its row groups are hash partitions."""
    meta = source.schema_arrow.metadata or {}
    return all(meta.get(k) == v for k, v in MARKER.items())
