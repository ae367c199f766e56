"""Benchmark of the decode stage (``make bench`` / ``python bench/decode.py``).

Builds synthetic Kaggle-format BSON files (>= 200 MB; JPEG-sized random pictures) and prints,
measured in one run:
  * decode throughput (MB/s, products/s) of ``cdiscount.decode.decode_file`` on all cores;
  * its ratio to the plain loop a Kaggle kernel would write (``bson.decode_file_iter`` + ``hashlib.md5``);
  * its ratio to the physical limit: this machine's raw MD5 throughput over the same bytes, all cores;
  * peak memory (main process and largest worker) for two file sizes, to show it does not grow.
Targets (issue 2): >= 2x the plain loop, >= 70% of the limit, memory independent of file size.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import bson
import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
CATEGORY = 1000010653


#: Start of image, then a baseline frame header (SOF0: 8 bits, 180 x 180, 3 components): with the end
#: marker appended, what decode's whole-JPEG check needs (it reads no further than the frame header).
JPEG_HEAD = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\xb4\x00\xb4\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
JPEG_END = b"\xff\xd9"


def fake_jpeg(rng: np.random.Generator) -> bytes:
    """3-7 KB shaped like a JPEG (header, random entropy-coded bytes, end marker): never decoded here."""
    return JPEG_HEAD + rng.bytes(int(rng.integers(3000, 7000))) + JPEG_END


def build_bson(path: Path, size_mb: int, seed: int = 0) -> Path:
    """A BSON of about ``size_mb`` MB: 1-4 pictures of 3-7 KB per product (real files average 4.7 KB)."""
    if path.exists() and path.stat().st_size >= size_mb * 1e6:
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    written, pid = 0, 0
    with open(tmp, "wb") as f:
        while written < size_mb * 1e6:
            imgs = [{"picture": fake_jpeg(rng)} for _ in range(int(rng.integers(1, 5)))]
            data = bson.encode({"_id": pid, "imgs": imgs, "category_id": CATEGORY})
            f.write(data)
            written += len(data)
            pid += 1
    os.replace(tmp, path)
    return path


def plain_loop(path: Path) -> float:
    """What a Kaggle kernel does: iterate documents, MD5 each picture. Returns seconds."""
    t = time.perf_counter()
    with open(path, "rb") as f:
        for doc in bson.decode_file_iter(f):
            for img in doc["imgs"]:
                hashlib.md5(img["picture"]).hexdigest()
    return time.perf_counter() - t


def _md5_chunk(args: tuple[str, int, int]) -> float:
    path, start, n = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(n)
    t = time.perf_counter()
    for i in range(0, len(data), 1 << 20):
        hashlib.md5(data[i : i + (1 << 20)]).digest()
    return time.perf_counter() - t


def md5_limit(path: Path, workers: int) -> float:
    """Raw MD5 over the same bytes, split across all cores, data already in memory. Returns seconds."""
    size = path.stat().st_size
    step = -(-size // workers)
    with mp.get_context("fork").Pool(workers) as pool:
        times = pool.map(_md5_chunk, [(str(path), i * step, min(step, size - i * step)) for i in range(workers)])
    return max(times)


def run_child(path: Path, workers: int) -> dict:
    """Run decode in a fresh process so its peak memory is its own."""
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--workers", str(workers)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(path: Path, workers: int) -> None:
    from cdiscount.decode import decode_file

    out = CACHE / "out"
    out.mkdir(exist_ok=True)
    t = time.perf_counter()
    stats = decode_file(path, out / "p.parquet", out / "i.parquet", out / "s.parquet", labelled=True,
                        category_ids=frozenset([CATEGORY]), on_error="raise", workers=workers,
                        block_size=32 * 1024 * 1024, progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({
        "seconds": seconds, "products": stats.products, "images": stats.images,
        "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[256, 1024], metavar="MB",
                    help="two file sizes in MB (default: 256 1024)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workers)
        return
    CACHE.mkdir(exist_ok=True)
    small, large = (build_bson(CACHE / f"bench-{mb}mb-v2.bson", mb) for mb in args.sizes)
    for p in (small, large):  # warm the page cache so every contender reads from memory
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass
    size = large.stat().st_size
    ours_small = run_child(small, args.workers)
    ours = run_child(large, args.workers)
    plain = plain_loop(large)
    limit = md5_limit(large, args.workers)
    mbs = size / 1e6 / ours["seconds"]
    print(f"decode bench on {args.workers} cores, file {size / 1e6:.0f} MB, {ours['products']} products, "
          f"{ours['images']} images")
    print(f"  decode stage      : {mbs:8.1f} MB/s  {ours['products'] / ours['seconds']:10.0f} products/s")
    print(f"  plain Kaggle loop : {size / 1e6 / plain:8.1f} MB/s   -> ratio decode/plain = {plain / ours['seconds']:.2f}x"
          f"  (target >= 2.0)")
    print(f"  MD5 limit ({args.workers} cores): {size / 1e6 / limit:8.1f} MB/s   -> decode at "
          f"{100 * limit / ours['seconds']:.0f}% of the limit (target >= 70%)")
    for label, r, p in (("small", ours_small, small), ("large", ours, large)):
        print(f"  peak RSS {label} ({p.stat().st_size / 1e6:.0f} MB file): main {r['main_peak_mb']:.0f} MB, "
              f"largest worker {r['worker_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
