"""Opening a parquet file to stream it batch by batch, with memory that does not grow with the file.

Why: ``pq.ParquetFile`` pre-buffers by default (``pre_buffer=True``): ``iter_batches`` then has Arrow's
read cache fetch every requested column chunk of every row group, and the cache keeps what it fetched,
so a pass over a file holds about the file. Measured (issue 11) on the F = 1.0 rehearsal's
``train_images.parquet`` (12.4 M rows, 383 row groups; six columns in 256 Ki-row batches, one pass):
689-696 MB peak PSS with the default, 233-238 MB without pre-buffering (167 MB under the streaming
stages' fixed mmap threshold, against 138 MB on the F = 0.1 file), and 1.0 s instead of 3.4-4.0 s. This
was most of dedup's and split's growth with the data. Pre-buffering pays on high-latency object stores;
the pipeline's tables are local files.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def parquet_file(path: str | Path) -> pq.ParquetFile:
    """``pq.ParquetFile`` without pre-buffering: what every streaming reader of the pipeline opens."""
    return pq.ParquetFile(path, pre_buffer=False)
