import numpy as np
import pandas as pd
import pytest

from cdiscount.features import gather, padded, product_spans, read_features


@pytest.fixture()
def feature_dir(tmp_path):
    """Two shards of 3 + 2 rows; products 7 (2 pictures), 3 (1), 9 (2); row r holds value r."""
    ids = np.array([7, 7, 3, 9, 9])
    np.save(tmp_path / "shard-0000.npy", np.arange(3 * 4, dtype=np.float16).reshape(3, 4) // 4)
    np.save(tmp_path / "shard-0001.npy", (np.arange(2 * 4, dtype=np.float16).reshape(2, 4) // 4) + 3)
    pd.DataFrame({"_id": ids, "img_idx": [0, 1, 0, 0, 1], "shard": [0, 0, 0, 1, 1],
                  "row": [0, 1, 2, 0, 1]}).to_parquet(tmp_path / "index.parquet")
    return tmp_path


def test_gather_reads_rows_across_shards_in_the_asked_order(feature_dir) -> None:
    index, shards = read_features(feature_dir)
    out = gather(index, shards, np.array([4, 0, 2]))
    assert out.dtype == np.float32 and out.shape == (3, 4)
    assert out[:, 0].tolist() == [4, 0, 2]


def test_product_spans_and_padding(feature_dir) -> None:
    index, shards = read_features(feature_dir)
    ids, start, count = product_spans(index["_id"].to_numpy())
    assert ids.tolist() == [7, 3, 9] and start.tolist() == [0, 2, 3] and count.tolist() == [2, 1, 2]
    x, mask = padded(index, shards, start[[2, 1]], count[[2, 1]], max_pictures=4)
    assert x.shape == (2, 4, 4)
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert x[0, :2, 0].tolist() == [3, 4] and x[1, 0, 0] == 2 and not x[~mask].any()
    x, mask = padded(index, shards, start[:1], count[:1], max_pictures=1)  # extra pictures dropped
    assert x.shape == (1, 1, 4) and x[0, 0, 0] == 0


def test_a_product_split_in_two_runs_is_an_error() -> None:
    with pytest.raises(ValueError, match="not contiguous"):
        product_spans(np.array([1, 1, 2, 1]))
    ids, start, count = product_spans(np.array([], dtype=np.int64))
    assert len(ids) == len(start) == len(count) == 0
