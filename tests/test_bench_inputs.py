"""The benchmarks' synthetic inputs pass the checks the stages apply (a bench that crashes measures nothing)."""
import importlib.util

import numpy as np

from cdiscount.bson_io import jpeg_problem
from conftest import REPO


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_decode_bench_pictures_are_whole_jpegs_to_decode() -> None:
    """Its pictures were a JPEG header + random bytes until decode began to reject exactly that."""
    rng = np.random.default_rng(0)
    pictures = [_bench("decode").fake_jpeg(rng) for _ in range(50)]
    assert [jpeg_problem(p) for p in pictures] == [None] * 50
    assert all(3000 <= len(p) - 23 < 7000 for p in pictures)
