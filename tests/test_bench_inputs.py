"""The benchmarks' synthetic inputs pass the checks the stages apply (a bench that crashes measures nothing)."""

import numpy as np

from cdiscount.bson_io import jpeg_problem
from conftest import bench_module


_bench = bench_module


def test_decode_bench_pictures_are_whole_jpegs_to_decode() -> None:
    """Its pictures were a JPEG header + random bytes until decode began to reject exactly that."""
    rng = np.random.default_rng(0)
    pictures = [_bench("decode").fake_jpeg(rng) for _ in range(50)]
    assert [jpeg_problem(p) for p in pictures] == [None] * 50
    assert all(3000 <= len(p) - 23 < 7000 for p in pictures)
