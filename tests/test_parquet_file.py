"""parquet_file: a pass of ``iter_batches`` holds about one batch of Arrow memory, not the file (issue 11:
pyarrow's default pre-buffering held ~0.7 GB over the real-size image table, most of dedup's growth)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import REPO

#: One pass over the file in row-group-sized batches; prints the Arrow pool's peak (a fresh process: the
#: pool's ``max_memory`` counts from the start).
PROBE = """
import sys
import pyarrow as pa
import pyarrow.parquet as pq
from cdiscount.parquet_file import parquet_file
open_ = parquet_file if sys.argv[2] == "helper" else pq.ParquetFile
rows = sum(b.num_rows for b in open_(sys.argv[1]).iter_batches(batch_size=10_000))
print("PEAK", pa.default_memory_pool().max_memory(), rows)
"""


def _peak(path: Path, how: str) -> tuple[int, int]:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), how], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    peak, rows = next(l for l in proc.stdout.splitlines() if l.startswith("PEAK")).split()[1:]
    return int(peak), int(rows)


def test_a_pass_holds_a_batch_not_the_file(tmp_path: Path) -> None:
    n = 400_000  # 40 row groups of hex-hash strings, ~19 MB uncompressed
    md5 = np.char.mod("%032x", np.random.default_rng(0).integers(0, 2**62, n))
    pq.write_table(pa.table({"_id": np.arange(n), "md5": md5}), tmp_path / "t.parquet", row_group_size=10_000,
                   compression="none")
    size = (tmp_path / "t.parquet").stat().st_size
    peak, rows = _peak(tmp_path / "t.parquet", "helper")
    assert rows == n
    assert peak < size / 4, f"{peak} bytes of Arrow memory for a {size}-byte file"
    default_peak, _ = _peak(tmp_path / "t.parquet", "pq.ParquetFile")
    assert default_peak > size / 2  # what the helper avoids: pyarrow's default caches the whole pass


def test_every_reader_in_src_opens_files_through_the_helper() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "src").rglob("*.py")
                 if p.name != "parquet_file.py" and "pq.ParquetFile(" in p.read_text()]
    assert not offenders, f"open parquet files with cdiscount.parquet_file.parquet_file: {offenders}"
