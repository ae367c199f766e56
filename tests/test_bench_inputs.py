"""The benchmarks' synthetic inputs pass the checks the stages apply (a bench that crashes measures nothing)."""

import numpy as np

from cdiscount.bson_io import jpeg_problem, whole_jpegs
from conftest import bench_module


_bench = bench_module


def test_decode_bench_pictures_are_whole_jpegs_to_decode() -> None:
    """Its pictures were a JPEG header + random bytes until decode began to reject exactly that."""
    rng = np.random.default_rng(0)
    bench = _bench("decode")
    for kind, (lo, hi) in bench.PICTURES.items():
        pictures = [bench.fake_jpeg(rng, (lo, hi)) for _ in range(50)]
        assert [jpeg_problem(p) for p in pictures] == [None] * 50, kind
        assert all(lo <= len(p) < hi for p in pictures), kind
        blob = b"".join(pictures)  # and the decode stage's fast path takes them
        lengths = np.array([len(p) for p in pictures])
        assert whole_jpegs(np.frombuffer(blob, np.uint8), np.cumsum(lengths) - lengths, lengths).all(), kind
