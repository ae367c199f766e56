"""The OCR reader: cache by MD5, deadlines, worker crashes, atomic and resumable output."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ocr_helpers import CountingEngine, MarkedEngine

from cdiscount.bson_io import ImageStore
from cdiscount.ocr.engines import OcrEngineUnavailable
from cdiscount.ocr.preprocess import PreprocessConfig
from cdiscount.ocr.reader import SpanReader, image_jobs, load_cache, read_images, span_jobs

CFG = PreprocessConfig(upscale=1.0, border=0, auto_invert=False)


def jpeg(level: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), level, np.uint8))
    assert ok
    return buf.tobytes()


def items(levels: list[int]) -> list[tuple[str, bytes]]:
    out = []
    for level in levels:
        data = jpeg(level)
        out.append((hashlib.md5(data).hexdigest(), data))
    return out


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_cache_reads_each_md5_once_and_reruns_skip_done_work(tmp_path: Path) -> None:
    cache = tmp_path / "ocr.parquet"
    batch = items([100, 150, 200, 100])  # the last is byte-identical to the first
    engine = CountingEngine()
    s = read_images(batch, engine, CFG, cache, workers=0, progress=False)
    assert engine.calls == 3
    assert (s.images, s.read, s.cached, s.errors) == (3, 3, 0, 0)
    assert s.non_empty_rate == 1.0 and s.mean_chars == len("text 100") and s.seconds_per_image > 0
    table = load_cache(cache)
    assert list(table.columns) == ["md5", "text", "seconds", "error"]
    assert sorted(table["text"]) == ["text 100", "text 150", "text 200"]

    again = CountingEngine()
    s = read_images(batch + items([50, 250]), again, CFG, cache, workers=0, progress=False)
    assert again.calls == 2  # only the two new pictures
    assert (s.images, s.read, s.cached) == (5, 2, 3)
    assert len(load_cache(cache)) == 5

    nothing = CountingEngine()
    mtime = cache.stat().st_mtime_ns
    s = read_images(batch, nothing, CFG, cache, workers=0, progress=False)
    assert nothing.calls == 0 and s.read == 0 and s.images == 3  # stats over the pictures asked for
    assert cache.stat().st_mtime_ns == mtime  # nothing new: the output is left alone


def test_other_settings_invalidate_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "ocr.parquet"
    batch = items([10 * k for k in range(3, 7)])
    read_images(batch, CountingEngine(), CFG, cache, workers=0, progress=False)
    engine = CountingEngine()
    read_images(batch, engine, PreprocessConfig(upscale=3.0), cache, workers=0, progress=False)
    assert engine.calls == 4  # texts from other preprocessing are not reused
    assert len(load_cache(cache)) == 4


def test_worker_pool_matches_in_process_reading(tmp_path: Path) -> None:
    batch = items([30, 60, 90, 120, 150, 180, 210])
    serial = read_images(batch, CountingEngine(), CFG, tmp_path / "a.parquet", workers=0, progress=False)
    pooled = read_images(iter(batch), CountingEngine(), CFG, tmp_path / "b.parquet", workers=2, progress=False)
    assert pooled.read == serial.read == 7
    a, b = load_cache(tmp_path / "a.parquet"), load_cache(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_a_hanging_picture_gets_an_error_row_not_a_hang(tmp_path: Path) -> None:
    batch = items([0, 100, 140, 180, 220])  # level 0: the engine hangs on it for 120 s
    t0 = time.monotonic()
    s = read_images(batch, MarkedEngine("sleep"), CFG, tmp_path / "ocr.parquet", workers=2, timeout_s=0.5,
                    grace_s=0.5, progress=False)
    assert time.monotonic() - t0 < 30
    table = load_cache(tmp_path / "ocr.parquet").set_index("md5")
    hung = table.loc[batch[0][0]]
    assert hung["text"] == "" and hung["error"].startswith("timeout")
    assert (table.drop(index=batch[0][0])["error"] == "").all()  # the others were read (new worker)
    assert (s.images, s.errors, s.timeouts) == (5, 1, 1)


def test_engine_timeout_and_crash_are_error_rows(tmp_path: Path) -> None:
    batch = items([0, 128, 255])
    s = read_images(batch, MarkedEngine("soft"), CFG, tmp_path / "soft.parquet", workers=0, progress=False)
    assert (s.errors, s.timeouts, s.read) == (1, 1, 3)
    cache = tmp_path / "crash.parquet"
    s = read_images(batch, MarkedEngine("crash"), CFG, cache, workers=1, progress=False)
    table = load_cache(cache).set_index("md5")
    assert table.loc[batch[0][0], "error"].startswith("worker died")
    assert (s.errors, s.timeouts, s.images) == (1, 0, 3)
    # an errored picture stays cached (a re-run must not crash or hang on it again) unless retried
    fixed = CountingEngine()
    fixed.settings = lambda: {"engine": "marked", "mode": "crash"}  # same cache key
    read_images(batch, fixed, CFG, cache, workers=0, progress=False)
    assert fixed.calls == 0
    read_images(batch, fixed, CFG, cache, workers=0, retry_errors=True, progress=False)
    assert fixed.calls == 1
    assert (load_cache(cache)["error"] == "").all()


def test_an_interrupted_run_keeps_its_checkpoints_and_resumes(tmp_path: Path) -> None:
    cache = tmp_path / "ocr.parquet"
    batch = items([200, 180, 0, 160, 140])  # the engine 'disappears' on the third picture
    with pytest.raises(OcrEngineUnavailable):
        read_images(batch, MarkedEngine("unavailable"), CFG, cache, workers=0, checkpoint_s=0, progress=False)
    assert no_temp_files(tmp_path)
    done = load_cache(cache)
    assert len(done) == 2  # the two pictures read before the failure, checkpointed whole
    repaired = CountingEngine()
    repaired.settings = lambda: {"engine": "marked", "mode": "unavailable"}  # same cache key
    s = read_images(batch, repaired, CFG, cache, workers=0, progress=False)
    assert repaired.calls == 3 and s.images == 5 and s.cached == 2


def test_workers_read_bytes_from_the_image_store_or_spans(tmp_path: Path) -> None:
    """Items may carry an image-index row or a byte span instead of bytes: workers pread the JPEG themselves."""
    batch = items([40, 80, 120, 160])
    blob = tmp_path / "train.bson"
    offsets, pos = [], 7
    with open(blob, "wb") as f:
        f.write(b"\0" * pos)
        for _, data in batch:
            offsets.append(pos)
            f.write(data + b"\0\0")
            pos += len(data) + 2
    index = tmp_path / "train_images.parquet"
    pq.write_table(pa.table({"_id": np.arange(4), "img_idx": np.zeros(4, np.int8), "jpeg_offset": offsets,
                             "jpeg_length": [len(d) for _, d in batch]}), index)
    store = ImageStore(index, blob)
    jobs = image_jobs([m for m, _ in batch])
    s = read_images(jobs, CountingEngine(), CFG, tmp_path / "ocr.parquet", store=store, workers=2, progress=False)
    assert s.read == 4 and s.errors == 0
    via_bytes = read_images(batch, CountingEngine(), CFG, tmp_path / "b.parquet", workers=0, progress=False)
    assert via_bytes.read == 4
    pd.testing.assert_frame_equal(load_cache(tmp_path / "ocr.parquet").drop(columns="seconds"),
                                  load_cache(tmp_path / "b.parquet").drop(columns="seconds"))
    spans = span_jobs([m for m, _ in batch], offsets, [len(d) for _, d in batch])
    s = read_images(spans, CountingEngine(), CFG, tmp_path / "d.parquet", store=SpanReader(blob), workers=1,
                    progress=False)
    assert s.read == 4 and s.errors == 0
    pd.testing.assert_frame_equal(load_cache(tmp_path / "d.parquet").drop(columns="seconds"),
                                  load_cache(tmp_path / "b.parquet").drop(columns="seconds"))
    s = read_images(image_jobs(["x"]), CountingEngine(), CFG, tmp_path / "c.parquet", workers=0, progress=False)
    assert s.errors == 1 and "no store" in load_cache(tmp_path / "c.parquet")["error"][0]
