from pathlib import Path

import numpy as np
import pytest

from cdiscount.infer import FeatureShards


def _memmap_shards(out: Path, feats: np.ndarray, shard_rows: int) -> None:
    """How the shards were written before: one writable memmap per shard (every page stayed mapped)."""
    n, dim = feats.shape
    for s in range(max(1, -(-n // shard_rows))):
        m = np.lib.format.open_memmap(out / f"shard-{s:04d}.npy", mode="w+", dtype=np.float16,
                                      shape=(min(shard_rows, n - s * shard_rows), dim))
        m[:] = feats[s * shard_rows : (s + 1) * shard_rows]
        m.flush()
        del m


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("n", [0, 7, 64, 1000])
def test_feature_shards_are_the_memmaps_bytes_and_stay_unmapped(tmp_path: Path, n: int) -> None:
    feats = np.random.default_rng(n).standard_normal((n, 12)).astype(np.float16)
    (tmp_path / "ref").mkdir()
    _memmap_shards(tmp_path / "ref", feats, shard_rows=64)
    shards = FeatureShards(tmp_path / "new", n, 12, shard_rows=64)
    rng = np.random.default_rng(1)
    at = 0
    while at < n:  # batches of any size, across shard boundaries
        b = int(rng.integers(1, 90))
        shards.append(feats[at : at + b])
        at += b
        if Path("/proc/self/maps").exists():
            assert not any(_mapped(p) for p in (tmp_path / "new").glob("*.npy"))
    shards.close()
    ref, new = sorted((tmp_path / "ref").glob("*.npy")), sorted((tmp_path / "new").glob("*.npy"))
    assert [p.name for p in ref] == [p.name for p in new]
    for a, b in zip(ref, new):
        assert a.read_bytes() == b.read_bytes()


def test_feature_shards_refuse_to_close_short(tmp_path: Path) -> None:
    shards = FeatureShards(tmp_path, 10, 4, shard_rows=4)
    shards.append(np.zeros((5, 4), np.float16))
    with pytest.raises(AssertionError, match="wrote 1 of 3 shards"):
        shards.close()
