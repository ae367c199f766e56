"""A parquet writer fed table after table that writes the bytes ``pq.write_table(row_group_size=ROW_GROUP)``
would write for their concatenation, holding one row group at most.

Why: stages that used to build a whole table and ``pq.write_table`` it now stream, and their outputs
must stay byte-identical for the same rows (DVC then leaves every downstream stage cached, and the sample's
metrics stay what they were: every table of the sample is below one row group, where the bytes are also
those of a plain ``pq.write_table``).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Rows per row group. ``pq.write_table``'s own default (1 Mi rows) made the writer hold up to 1 Mi rows
#: (about 100 MB of dedup's hash table at the real size); 128 Ki rows hold an eighth of that and are still
#: large row groups for every reader. Measured at F = 1.0 (issue 11): dedup's and split's peaks barely moved
#: (0.84 -> 0.83, 0.61 -> 0.59 GB PSS): their peak is elsewhere (the partition pass, one read batch).
ROW_GROUP = 128 * 1024


class WholeTableWriter:
    """Writes tables one after another exactly as ``pq.write_table(row_group_size=ROW_GROUP)`` of their
    concatenation would (the same row groups, hence the same bytes), holding at most one row group."""

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
