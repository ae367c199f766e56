"""Benchmark of the decode stage (``make bench`` / ``python bench/decode.py``).

Builds synthetic Kaggle-format BSON files (JPEG-shaped random pictures) and prints, measured in one run:
  * decode throughput (MB/s, products/s) of ``cdiscount.decode.decode_file`` on all cores;
  * its ratio to the plain loop a Kaggle kernel would write (``bson.decode_file_iter`` + ``hashlib.md5``),
    on real-size pictures (3-7 KB, >= 200 MB) and on small ones (0.5-1 KB, what ``cdiscount synth`` writes
    for rehearsals: there the per-document cost shows, not MD5);
  * its ratio to the physical limit: this machine's raw MD5 throughput over the same bytes, all cores;
  * peak memory (main process and largest worker) for two file sizes, to show it does not grow.
Targets (issues 2 and 11): >= 2x the plain loop on real-size pictures, >= 1x on small ones, >= 70% of
the limit, memory independent of file size. ``--files`` adds any Kaggle-format BSON (e.g. a synth file).
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


#: The header of a baseline JPEG as PIL writes it (start of image, JFIF APP0, two quantisation tables,
#: then a frame header: 8 bits, 180 x 180, 3 components): with the end marker appended, what decode's
#: whole-JPEG check walks (it reads no further than the frame header).
JPEG_HEAD = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404050a070706"
    "080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffdb004301030404050405"
    "09050509140d0b0d141414141414141414141414141414141414141414141414141414141414141414141414141414141414"
    "1414141414141414ffc000110800b400b403012200021101031101")
JPEG_END = b"\xff\xd9"
#: Bytes per picture: real files average 4.7 KB; synth's rehearsal files (32 px) 0.5-1 KB.
PICTURES = {"real": (3000, 7000), "small": (500, 1000)}


def fake_jpeg(rng: np.random.Generator, size: tuple[int, int] = PICTURES["real"]) -> bytes:
    """Shaped like a JPEG (header, random entropy-coded bytes, end marker), ``size`` bytes: never decoded here."""
    return JPEG_HEAD + rng.bytes(int(rng.integers(*size)) - len(JPEG_HEAD) - 2) + JPEG_END


def build_bson(path: Path, size_mb: int, seed: int = 0, pictures: str = "real") -> Path:
    """A BSON of about ``size_mb`` MB: 1-4 pictures per product (``PICTURES[pictures]`` bytes each)."""
    if path.exists() and path.stat().st_size >= size_mb * 1e6:
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    written, pid = 0, 0
    with open(tmp, "wb") as f:
        while written < size_mb * 1e6:
            imgs = [{"picture": fake_jpeg(rng, PICTURES[pictures])} for _ in range(int(rng.integers(1, 5)))]
            data = bson.encode({"_id": pid, "imgs": imgs, "category_id": CATEGORY})
            f.write(data)
            written += len(data)
            pid += 1
    os.replace(tmp, path)
    return path


def plain_loop(path: Path) -> tuple[float, int]:
    """What a Kaggle kernel does: iterate documents, MD5 each picture. Returns (seconds, products)."""
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for doc in bson.decode_file_iter(f):
            n += 1
            for img in doc["imgs"]:
                hashlib.md5(img["picture"]).hexdigest()
    return time.perf_counter() - t, n


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
    names = path.parent / "category_names.csv"
    if path.parent != CACHE and names.exists():  # a Kaggle-format folder (synth's)
        import pandas as pd

        categories = frozenset(pd.read_csv(names)["category_id"].tolist())
    else:
        categories = frozenset([CATEGORY])
    t = time.perf_counter()
    stats = decode_file(path, out / "p.parquet", out / "i.parquet", out / "s.parquet", labelled="test" not in path.name,
                        category_ids=categories, on_error="raise", workers=workers, block_size=32 * 1024 * 1024,
                        progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({
        "seconds": seconds, "products": stats.products, "images": stats.images,
        "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


def warm(path: Path) -> None:
    """Read the file once so that every contender reads it from the page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def versus_plain(label: str, path: Path, workers: int, target: float) -> dict:
    """Decode and the plain loop on the same file, one after the other; prints one line."""
    warm(path)
    ours = run_child(path, workers)
    plain, n = plain_loop(path)
    size = path.stat().st_size
    ratio = plain / ours["seconds"]
    print(f"  {label:<18}: {size / 1e6:7.0f} MB, {size / n / 1e3:4.1f} KB/product: decode "
          f"{ours['products'] / ours['seconds']:8.0f} products/s, plain loop {n / plain:8.0f} products/s "
          f"-> ratio decode/plain = {ratio:.2f}x (target >= {target:.1f})")
    return {"ratio": ratio, "ours": ours, "plain_s": plain}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[256, 1024], metavar="MB",
                    help="two file sizes in MB, real-size pictures (default: 256 1024)")
    ap.add_argument("--small-mb", type=int, default=128, help="size of the small-picture file (default 128 MB)")
    ap.add_argument("--files", type=Path, nargs="*", default=[],
                    help="more Kaggle-format BSON files to compare on (e.g. cdiscount synth's train.bson)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workers)
        return
    CACHE.mkdir(exist_ok=True)
    small, large = (build_bson(CACHE / f"bench-{mb}mb-v3.bson", mb) for mb in args.sizes)
    tiny = build_bson(CACHE / f"bench-small-pictures-{args.small_mb}mb-v3.bson", args.small_mb, pictures="small")
    for p in (small, large):
        warm(p)
    size = large.stat().st_size
    ours_small = run_child(small, args.workers)
    print(f"decode bench on {args.workers} cores")
    real = versus_plain("real-size pictures", large, args.workers, 2.0)
    ours = real["ours"]
    limit = md5_limit(large, args.workers)
    print(f"    {ours['products']} products, {ours['images']} images, {size / 1e6 / ours['seconds']:.1f} MB/s; "
          f"MD5 limit ({args.workers} cores) {size / 1e6 / limit:.1f} MB/s -> decode at "
          f"{100 * limit / ours['seconds']:.0f}% of the limit (target >= 70%)")
    versus_plain("small pictures", tiny, args.workers, 1.0)
    for path in args.files:
        versus_plain(path.parent.name + "/" + path.name, path, args.workers, 1.0)
    for label, r, p in (("small", ours_small, small), ("large", ours, large)):
        print(f"  peak RSS {label} ({p.stat().st_size / 1e6:.0f} MB file): main {r['main_peak_mb']:.0f} MB, "
              f"largest worker {r['worker_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
