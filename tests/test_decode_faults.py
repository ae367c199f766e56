"""Decode on broken or unusual input: every failure names the file, the byte offset and the
``_id`` where it can be known, and ``on_error: skip`` skips what can be skipped."""
from __future__ import annotations

import hashlib
from pathlib import Path

import bson
import numpy as np
import pandas as pd
import pytest
from bson.binary import Binary
from PIL import Image

from cdiscount.bson_io import ImageStore
from cdiscount.decode import decode_file, open_store, run_decode
from cdiscount.dedup import run_dedup
from cdiscount.sample import draw
from conftest import write_bson

CATS = frozenset({10, 20})
CATEGORY_CSV = "category_id,category_level1,category_level2,category_level3\n10,A,B,C\n20,A,B,D\n"


def jpeg(seed: int) -> bytes:
    """A real (tiny) JPEG, different for every ``seed``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return draw.to_jpeg(Image.fromarray(pixels), 90)


def doc(pid: int, pics: list[bytes] | None = None, cat: int | None = 10) -> dict:
    d: dict = {"_id": pid, "imgs": [{"picture": p} for p in (pics or [jpeg(pid)])]}
    if cat is not None:
        d["category_id"] = cat
    return d


def decode(tmp_path: Path, src: Path, **kw):
    return decode_file(src, tmp_path / "p.parquet", tmp_path / "i.parquet", tmp_path / "s.parquet",
                       labelled=kw.pop("labelled", True), category_ids=kw.pop("category_ids", CATS),
                       progress=False, **kw)


def raw_dir(tmp_path: Path, train: list[dict], test: list[dict]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_bson(raw / "train.bson", train)
    write_bson(raw / "test.bson", test)
    (raw / "category_names.csv").write_text(CATEGORY_CSV)
    return raw


# --- 3. more than 127 pictures, old binary subtype ---------------------------------------------


def test_a_product_with_more_than_127_pictures_decodes_and_dedups(tmp_path: Path) -> None:
    pics = [jpeg(i) for i in range(130)]
    raw = raw_dir(tmp_path, [doc(1, [jpeg(1000)]), doc(2, pics)], [doc(5, pics[120:], cat=None)])
    metrics = run_decode(raw, tmp_path / "interim", tmp_path / "m", workers=0, progress=False)
    assert metrics["train_images"] == 131 and metrics["train_images_per_product"]["130"] == 1
    products = pd.read_parquet(tmp_path / "interim" / "train_products.parquet")
    assert products.set_index("_id").loc[2, "n_imgs"] == 130
    store = open_store(tmp_path / "interim", "train")
    assert store.read_image(2, 129) == pics[129] and store.read_image(2, 128) == pics[128]
    run_dedup(tmp_path / "interim", tmp_path / "dedup", tmp_path / "m" / "dedup.json", progress=False)
    dup = pd.read_parquet(tmp_path / "dedup" / "duplicates.parquet")
    assert sorted(dup.loc[dup["split"] == "train", "img_idx"]) == list(range(120, 130))


def test_old_binary_subtype_2_pictures_are_indexed_past_their_inner_length(tmp_path: Path) -> None:
    pics = [jpeg(30), jpeg(40)]
    old = {"_id": 2, "imgs": [{"picture": Binary(p, 2)} for p in pics], "category_id": 20}
    src = write_bson(tmp_path / "train.bson", [doc(1), old, doc(3)])
    assert bson.encode(old).count(len(pics[0]).to_bytes(4, "little")) == 1  # the inner length is there
    for workers in (0, 2):
        stats = decode(tmp_path, src, workers=workers, on_error="skip")
        assert stats.products == 3 and stats.images == 4 and stats.skipped == {}
        images = pd.read_parquet(tmp_path / "i.parquet")
        store = ImageStore(tmp_path / "i.parquet", src)
        for row in images.index[images["_id"] == 2]:
            assert store.read_row(row) == pics[images.loc[row, "img_idx"]]
            assert images.loc[row, "md5"] == hashlib.md5(pics[images.loc[row, "img_idx"]]).hexdigest()
        store.close()
