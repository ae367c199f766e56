import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cdiscount.decode import run_decode
from cdiscount.dedup import DedupConfig, image_std, run_dedup
from conftest import DECODE, config
from cdiscount.sample import draw
from conftest import write_bson


def _jpeg(color) -> bytes:
    return draw.to_jpeg(Image.new("RGB", (180, 180), color), 90)


def _photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return draw.to_jpeg(draw.draw_view(draw.STYLES["JEUX - JOUETS"], rng.uniform(0, 1, 4), rng), 90)


def test_real_example_duplicates_and_test_lookup(kaggle_dir: Path, tmp_path: Path) -> None:
    run_decode(kaggle_dir, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    m = run_dedup(tmp_path / "interim", tmp_path / "dedup", tmp_path / "m" / "dedup.json", config(DedupConfig),
                  progress=False)
    hashes = pd.read_parquet(tmp_path / "dedup" / "hashes.parquet")
    # test.bson holds the same 82 products: every test product is fully matched
    assert m["test_products_with_train_match"] == 82
    assert m["test_products_fully_matched"] == 82
    assert m["test_images_with_train_match"] == 110
    # product 33's two identical pictures: one hash, 2 train copies, one category
    images = pd.read_parquet(tmp_path / "interim" / "train_images.parquet")
    h33 = hashes.set_index("md5").loc[images.loc[images["_id"] == 33, "md5"].iloc[0]]
    assert (h33["n_train"], h33["n_test"], h33["n_categories"]) == (2, 2, 1)
    assert m["distinct_images"] == 109 and m["images"] == 220
    assert json.loads((tmp_path / "m" / "dedup.json").read_text()) == m


@pytest.fixture()
def handmade(tmp_path: Path) -> Path:
    """Placeholder shared by 3 categories, a within-category repeat, a blank, a test match."""
    white, grey = _jpeg("white"), _jpeg((128, 128, 128))
    red, blue, green = (_photo(seed) for seed in range(3))
    raw = tmp_path / "raw"
    raw.mkdir()
    write_bson(raw / "train.bson", [
        {"_id": 1, "imgs": [{"picture": red}, {"picture": white}], "category_id": 10},
        {"_id": 2, "imgs": [{"picture": white}], "category_id": 20},
        {"_id": 3, "imgs": [{"picture": blue}, {"picture": white}], "category_id": 30},
        {"_id": 4, "imgs": [{"picture": blue}], "category_id": 30},
        {"_id": 5, "imgs": [{"picture": grey}], "category_id": 20},
    ])
    write_bson(raw / "test.bson", [
        {"_id": 7, "imgs": [{"picture": blue}]},
        {"_id": 8, "imgs": [{"picture": green}, {"picture": white}]},
        {"_id": 9, "imgs": [{"picture": green}]},
    ])
    (raw / "category_names.csv").write_text("category_id,category_level1,category_level2,category_level3\n"
                                            "10,A,X,a\n20,A,X,b\n30,B,Y,c\n")
    run_decode(raw, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    return tmp_path


@pytest.mark.parametrize("bucket_rows", [100_000, 2])  # 1 partition, 6 partitions of the 12 picture rows
def test_placeholders_within_category_blank_and_matches(handmade: Path, bucket_rows: int) -> None:
    m = run_dedup(handmade / "interim", handmade / "dedup", handmade / "m" / "dedup.json",
                  config(DedupConfig, bucket_rows=bucket_rows), progress=False)
    hashes = pd.read_parquet(handmade / "dedup" / "hashes.parquet").set_index("md5")
    white, blue, green = (hashes.loc[h] for h in pd.read_parquet(handmade / "interim" / "test_images.parquet")
                          .set_index(["_id", "img_idx"]).loc[[(8, 1), (7, 0), (8, 0)], "md5"])
    assert bool(white["is_placeholder"]) and white["n_categories"] == 3 and bool(white["is_blank"])
    assert not blue["is_placeholder"] and blue["top_category"] == 30 and blue["top_votes"] == 2
    assert green["n_train"] == 0 and green["n_test"] == 2  # duplicated within test only
    assert not bool(blue["is_blank"])
    assert m["placeholder_hashes"] == 1
    assert m["within_category_hashes"] == 1
    assert m["duplicated_hashes"] == 3
    assert m["duplicate_images"] == 3 + 2 + 1  # white x4 -> 3 extra copies, blue x3 -> 2, green x2 -> 1
    assert m["test_products_with_train_match"] == 2  # 7 (blue) and 8 (white)
    assert m["test_products_fully_matched"] == 1  # only 7
    votes = pd.read_parquet(handmade / "dedup" / "votes.parquet")
    assert sorted(votes.loc[votes["md5"] == white.name, "category_id"]) == [10, 20, 30]
    matches = pd.read_parquet(handmade / "dedup" / "test_matches.parquet")
    assert sorted(matches["_id"]) == [7, 8]


def test_image_std_separates_blank_from_textured() -> None:
    assert image_std(_jpeg("white")) < 1.0
    assert image_std(_photo(0)) > 10


def _aggregate_with_lambdas(rows: pd.DataFrame, placeholder_min_categories: int) -> pd.DataFrame:
    """The per-hash counts as the previous version computed them (one Python lambda per hash)."""
    size = rows.groupby("md5", sort=False)["split"].transform("size")
    dup = rows[size > 1]
    g = dup.groupby("md5", sort=True)
    hashes = pd.DataFrame({
        "n_train": g["split"].agg(lambda s: int((s == "train").sum())),
        "n_test": g["split"].agg(lambda s: int((s == "test").sum())),
        "n_categories": g["category_id"].nunique(),
    })
    first = g.head(1).set_index("md5")
    hashes["first_split"], hashes["first_id"], hashes["first_img_idx"] = first["split"], first["_id"], first["img_idx"]
    return hashes.reset_index()


def test_vectorised_aggregate_equals_the_per_hash_lambdas() -> None:
    from cdiscount.dedup import _aggregate

    rng = np.random.default_rng(0)
    n = 3000
    split = np.where(rng.random(n) < 0.7, "train", "test")
    rows = pd.DataFrame({"split": split, "_id": rng.integers(0, 10**6, n), "img_idx": rng.integers(0, 4, n).astype("int32"),
                         "category_id": np.where(split == "train", rng.integers(1, 6, n), np.nan),
                         "md5": [f"{h:032x}" for h in rng.integers(0, 900, n)],
                         "jpeg_offset": rng.integers(0, 10**9, n), "jpeg_length": rng.integers(1, 9999, n).astype("int32")})
    hashes, votes, dup = _aggregate(rows, 2)
    old = _aggregate_with_lambdas(rows, 2)
    cols = ["md5", "n_train", "n_test", "n_categories", "first_split", "first_id", "first_img_idx"]
    pd.testing.assert_frame_equal(hashes[cols].reset_index(drop=True), old[cols].reset_index(drop=True), check_dtype=False)
    assert len(hashes) > 500 and (hashes["n_test"] > 0).any() and (hashes["n_train"] == 0).any()
    first = rows.drop_duplicates("md5").set_index("md5").loc[hashes["md5"]]
    assert (hashes["jpeg_offset"].to_numpy() == first["jpeg_offset"].to_numpy()).all()  # the picture checked for blank


@pytest.mark.parametrize("workers", [1, 2])
def test_blank_check_pool_gives_the_same_bytes_as_one_process(handmade: Path, workers: int) -> None:
    run_dedup(handmade / "interim", handmade / f"d{workers}", handmade / "m" / f"{workers}.json",
              config(DedupConfig, bucket_rows=4, workers=workers), progress=False)
    run_dedup(handmade / "interim", handmade / "ref", handmade / "m" / "ref.json",
              config(DedupConfig, bucket_rows=4, workers=1), progress=False)
    for name in ("hashes", "votes", "duplicates", "test_matches"):
        assert (handmade / f"d{workers}" / f"{name}.parquet").read_bytes() == (handmade / "ref" / f"{name}.parquet").read_bytes()


def test_the_blank_check_workers_are_forked_before_any_row_is_read(handmade: Path) -> None:
    """Forked at the first bucket's check, each worker kept a copy-on-write image of the parent's heap of
    that moment (the partition pass, the bucket), private once the parent moved on: dedup's PSS grew
    with the data (0.40 GB at F = 0.1 of the real size, 0.33 GB forked first)."""
    import multiprocessing as mp

    from cdiscount.dedup import _BlankCheck

    before = set(mp.active_children())
    check = _BlankCheck(handmade / "interim", 3.0, 2)
    try:
        assert len(set(mp.active_children()) - before) == 2
    finally:
        check.close()


def test_partitions_follow_the_rows_so_a_partition_holds_bucket_rows(handmade: Path, monkeypatch) -> None:
    """A partition holds about ``dedup.bucket_rows`` rows whatever the data size: the 12 picture rows take
    one partition at 100 k rows, four at 3 (the same tables, rows in another order); never more than
    ``MAX_BUCKETS``."""
    from cdiscount import dedup

    ref = run_dedup(handmade / "interim", handmade / "ref", handmade / "m" / "ref.json",
                    config(DedupConfig, bucket_rows=100_000), progress=False)
    assert dedup.partitions(handmade / "interim", 100_000) == 1
    assert dedup.partitions(handmade / "interim", 3) == 4 and dedup.partitions(handmade / "interim", 12) == 1
    seen: list[int] = []
    real = dedup._partition
    monkeypatch.setattr(dedup, "_partition", lambda i, p, buckets, r: seen.append(buckets) or real(i, p, buckets, r))
    got = run_dedup(handmade / "interim", handmade / "small", handmade / "m" / "small.json",
                    config(DedupConfig, bucket_rows=3), progress=False)
    assert seen == [4] and got == ref
    for name in ("hashes", "votes", "duplicates", "test_matches"):
        a, b = (pd.read_parquet(handmade / d / f"{name}.parquet") for d in ("ref", "small"))
        key = list(a.columns)
        pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                      b.sort_values(key).reset_index(drop=True))
    monkeypatch.setattr(dedup, "MAX_BUCKETS", 2)
    assert dedup.partitions(handmade / "interim", 1) == 2


def test_duplicates_are_written_a_hash_partition_per_row_group_and_say_so(handmade: Path) -> None:
    """The ensemble's votes read duplicates.parquet by row group as hash partitions: every hash lies in
    one row group, and the file's schema says so."""
    import pyarrow.parquet as pq

    from cdiscount.partitioned_parquet import is_hash_partitioned

    run_dedup(handmade / "interim", handmade / "dedup", handmade / "m" / "dedup.json",
              config(DedupConfig, bucket_rows=2), progress=False)
    f = pq.ParquetFile(handmade / "dedup" / "duplicates.parquet")
    groups = [f.read_row_group(g, columns=["md5"]).column(0).to_pylist() for g in range(f.num_row_groups)]
    seen = [h for g in groups for h in set(g)]
    assert is_hash_partitioned(f) and sum(map(len, groups)) == f.metadata.num_rows
    assert len(seen) == len(set(seen)) and sum(1 for g in groups if g) > 1  # each hash in one of several groups


def test_product_match_counts_equal_the_pandas_join(tmp_path: Path) -> None:
    from cdiscount.dedup import _product_matches

    rng = np.random.default_rng(0)
    test = pd.DataFrame({"_id": np.arange(1, 2001) * 5, "n_imgs": rng.integers(1, 5, 2000).astype(np.int32)})
    test.to_parquet(tmp_path / "test_products.parquet", index=False)
    matched = rng.choice(test["_id"], 3000)
    per = pd.Series(matched).value_counts()
    n = test["_id"].map(per).fillna(0).to_numpy()
    expected = {"test_products_with_train_match": int((n > 0).sum()),
                "test_products_fully_matched": int((n >= test["n_imgs"].to_numpy()).sum())}
    assert _product_matches(tmp_path, matched, batch_rows=77) == expected
    assert _product_matches(tmp_path, np.zeros(0, np.int64)) == {"test_products_with_train_match": 0,
                                                                  "test_products_fully_matched": 0}
