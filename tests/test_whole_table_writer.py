"""WholeTableWriter: the bytes of one ``pq.write_table`` of the concatenation, one row group held at most."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdiscount import whole_table_writer
from cdiscount.whole_table_writer import WholeTableWriter


def _tables(rows: list[int], seed: int = 0) -> list[pa.Table]:
    """Tables shaped like dedup's hash rows: a 32-character hash and a few integers."""
    rng = np.random.default_rng(seed)
    out = []
    for n in rows:
        md5 = [f"{v:032x}" for v in rng.integers(0, 1 << 62, n)]
        out.append(pa.table({"md5": pa.array(md5, pa.string()), "n_train": rng.integers(0, 9, n),
                             "n_test": rng.integers(0, 9, n), "first_id": rng.integers(0, 1 << 40, n)}))
    return out


@pytest.mark.parametrize("rows", [[0], [5], [300, 0, 700], [1000], [999, 1, 1000, 2500, 3], [4321]])
def test_bytes_equal_one_write_table_of_the_concatenation(tmp_path: Path, monkeypatch, rows: list[int]) -> None:
    monkeypatch.setattr(whole_table_writer, "ROW_GROUP", 1000)  # several row groups from small tables
    tables = _tables(rows)
    w = WholeTableWriter(tmp_path / "streamed.parquet")
    for t in tables:
        w.write(t)
    w.close()
    pq.write_table(pa.concat_tables(tables), tmp_path / "whole.parquet", row_group_size=1000)
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    groups = pq.ParquetFile(tmp_path / "streamed.parquet").metadata
    assert all(groups.row_group(i).num_rows <= 1000 for i in range(groups.num_row_groups))


def test_memory_holds_one_row_group_not_the_table(tmp_path: Path) -> None:
    """800 k hash rows (their strings: 29 MB in arrow's pool) fed 4 k at a time: the writer holds at most one
    row group. With ``pq.write_table``'s 1 Mi-row row groups it held all 800 k (issue 11: dedup's growing memory)."""
    w = WholeTableWriter(tmp_path / "t.parquet")
    base = pa.total_allocated_bytes()
    peak = 0
    for i in range(200):
        w.write(_tables([4096], seed=i)[0])  # built and dropped here: only the writer keeps rows
        peak = max(peak, pa.total_allocated_bytes() - base)
    w.close()
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_rows == 819_200
    assert peak < 8 << 20, f"the writer held {peak / 2**20:.1f} MB"
