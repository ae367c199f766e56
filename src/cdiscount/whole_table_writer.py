"""A parquet writer fed table after table that writes the bytes ``pq.write_table`` would write for
their concatenation, holding one row group at most.

Why: stages that used to build a whole table and ``pq.write_table`` it now stream, and their outputs
must stay byte-identical (DVC then leaves every downstream stage cached, and the sample's metrics stay
what they were).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Rows per row group of ``pq.write_table`` when not told otherwise.
ROW_GROUP = 1024 * 1024


class WholeTableWriter:
    """Writes tables one after another exactly as ``pq.write_table`` of their concatenation would (the same
    row groups of :data:`ROW_GROUP` rows, hence the same bytes), holding at most one row group."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.empty: pa.Table | None = None

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            self.empty = self.empty or table
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.pending.append(table)
        self.rows += table.num_rows
        while self.rows >= ROW_GROUP:
            whole = pa.concat_tables(self.pending)
            self.writer.write_table(whole.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
            rest = whole.slice(ROW_GROUP)
            self.pending, self.rows = [rest], rest.num_rows

    def close(self) -> None:
        if self.writer is None:  # no rows at all: what write_table writes for an empty table
            pq.write_table(self.empty, self.path)
            return
        if self.rows:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP)
        self.writer.close()
