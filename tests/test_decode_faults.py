"""Decode on broken or unusual input: every failure names the file, the byte offset and the
``_id`` where it can be known, and ``on_error: skip`` skips what can be skipped."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import bson
import numpy as np
import pandas as pd
import pytest
from bson.binary import Binary
from PIL import Image

from cdiscount.blocks import iter_documents
from cdiscount.bson_io import ImageStore
from cdiscount.bson_io import open_store
from cdiscount.decode import decode_file, run_decode
from cdiscount.dedup import DedupConfig, run_dedup
from cdiscount.errors import InputError
from cdiscount.sample import draw
from conftest import DECODE, config, write_bson

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
                       on_error=kw.pop("on_error", "raise"), workers=kw.pop("workers", 0),
                       block_size=kw.pop("block_size", 32 << 20), progress=False, **kw)


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
    metrics = run_decode(raw, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    assert metrics["train_images"] == 131 and metrics["train_images_per_product"]["130"] == 1
    products = pd.read_parquet(tmp_path / "interim" / "train_products.parquet")
    assert products.set_index("_id").loc[2, "n_imgs"] == 130
    store = open_store(tmp_path / "interim", "train")
    assert store.read_image(2, 129) == pics[129] and store.read_image(2, 128) == pics[128]
    run_dedup(tmp_path / "interim", tmp_path / "dedup", tmp_path / "m" / "dedup.json", config(DedupConfig),
              progress=False)
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


# --- 2. pictures with a JPEG header but not a whole JPEG ---------------------------------------


def _broken_pictures() -> dict[str, tuple[bytes, str]]:
    good = jpeg(7)
    sof = good.index(b"\xff\xc0")
    no_size = bytearray(good)
    no_size[sof + 7 : sof + 9] = b"\x00\x00"  # width 0
    rng = np.random.default_rng(0)
    return {
        "truncated": (good[: len(good) // 2], r"no end-of-image marker \(FFD9\)"),
        "garbage_after_header": (good[:4] + rng.integers(0, 256, 300, dtype=np.uint8).tobytes() + b"\xff\xd9",
                                 "header: "),
        "zeros_after_header": (good[:4] + bytes(60), r"no end-of-image marker \(FFD9\)"),
        "zero_width": (bytes(no_size), "frame of 0x8 pixels"),
        "no_frame_header": (good[:2] + good[sof + 19 :], "before any frame header"),
    }


BROKEN = _broken_pictures()


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_jpeg_names_file_offset_id_and_picture(tmp_path: Path, kind: str) -> None:
    pic, what = BROKEN[kind]
    src = write_bson(tmp_path / "train.bson", [doc(1), doc(2, [jpeg(2), pic]), doc(3)])
    with pytest.raises(InputError, match=rf"imgs\[1\] is not a whole JPEG: .*{what}") as e:
        decode(tmp_path, src, workers=0)
    assert (e.value.path, e.value.offset, e.value.product_id) == (str(src), len(bson.encode(doc(1))), 2)
    stats = decode(tmp_path, src, workers=2, on_error="skip")
    assert stats.products == 2 and stats.skipped == {"bad_jpeg": 1}
    skipped = pd.read_parquet(tmp_path / "s.parquet")
    assert skipped["_id"].tolist() == [2] and skipped["reason"].tolist() == ["bad_jpeg"]
    assert pd.read_parquet(tmp_path / "i.parquet")["_id"].tolist() == [1, 3]


def test_trailing_zero_padding_after_the_end_marker_is_accepted(tmp_path: Path) -> None:
    padded = jpeg(9) + bytes(7)
    src = write_bson(tmp_path / "train.bson", [doc(1, [padded])])
    assert decode(tmp_path, src, workers=0).images == 1
    assert ImageStore(tmp_path / "i.parquet", src).read_row(0) == padded


def test_skipped_broken_jpegs_are_in_the_stage_metrics(tmp_path: Path) -> None:
    raw = raw_dir(tmp_path, [doc(1), doc(2, [BROKEN["truncated"][0]])], [doc(5, cat=None)])
    metrics = run_decode(raw, tmp_path / "interim", tmp_path / "m", replace(DECODE, on_error="skip"), progress=False)
    assert metrics["train_skipped_by_reason"] == {"bad_jpeg": 1} and metrics["train_products"] == 1


# --- 4. framing: a bad length prefix names its document; real truncation stays truncation ------


def _file_with_prefix(tmp_path: Path, k: int, fix) -> tuple[Path, int]:
    """Ten good documents, the length prefix of the ``k``-th (``_id`` k + 1) replaced by ``fix(length, raw)``."""
    raw = [bson.encode(doc(i + 1)) for i in range(10)]
    raw[k] = int(fix(len(raw[k]), raw)).to_bytes(4, "little", signed=True) + raw[k][4:]
    path = tmp_path / "train.bson"
    path.write_bytes(b"".join(raw))
    return path, sum(len(r) for r in raw[:k])


BAD_PREFIXES = {
    "too_small": (4, lambda n, raw: n - 40),
    "too_big": (4, lambda n, raw: n + 100),
    "past_the_end_of_a_file_that_goes_on": (2, lambda n, raw: 10 * 1024 * 1024),
    "impossible": (6, lambda n, raw: 2**31 - 1),
    "negative": (6, lambda n, raw: -3),
    "swallows_the_next_document": (3, lambda n, raw: n + len(raw[4])),
    "last_document_a_few_bytes_short": (9, lambda n, raw: n - 2),
}


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("case", sorted(BAD_PREFIXES))
def test_a_bad_length_prefix_names_offset_and_id(tmp_path: Path, case: str, on_error: str) -> None:
    k, fix = BAD_PREFIXES[case]
    src, offset = _file_with_prefix(tmp_path, k, fix)
    for workers in (0, 2):
        with pytest.raises(InputError, match="bad length prefix") as e:
            decode(tmp_path, src, workers=workers, on_error=on_error, block_size=3000)
        assert (e.value.path, e.value.offset, e.value.product_id) == (str(src), offset, k + 1)
        assert "truncated" not in str(e.value)


def test_a_tool_reading_documents_sees_the_same_framing_error(tmp_path: Path) -> None:
    k, fix = BAD_PREFIXES["swallows_the_next_document"]
    src, offset = _file_with_prefix(tmp_path, k, fix)
    with pytest.raises(InputError, match="bad length prefix") as e:
        list(iter_documents(src))
    assert (e.value.offset, e.value.product_id) == (offset, k + 1)


@pytest.mark.parametrize("cut", [1, 10, 300])
def test_a_file_that_really_ends_mid_document_is_truncated_with_its_id(tmp_path: Path, cut: int) -> None:
    raw = [bson.encode(doc(i + 1)) for i in range(3)]
    src = tmp_path / "train.bson"
    src.write_bytes(b"".join(raw)[:-cut])
    with pytest.raises(InputError, match="truncated file: document declares") as e:
        decode(tmp_path, src, workers=0, on_error="skip")
    assert (e.value.offset, e.value.product_id) == (len(raw[0]) + len(raw[1]), 3)


# --- 5. input checks up front -------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_bson_is_an_error_naming_it(tmp_path: Path, split: str) -> None:
    raw = raw_dir(tmp_path, [doc(1)], [doc(5, cat=None)])
    (raw / f"{split}.bson").write_bytes(b"")
    with pytest.raises(InputError, match=r"no products \(empty file\)") as e:
        run_decode(raw, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    assert e.value.path == str(raw / f"{split}.bson")


def test_a_split_whose_records_are_all_skipped_has_no_products(tmp_path: Path) -> None:
    raw = raw_dir(tmp_path, [doc(1, cat=99)], [doc(5, cat=None)])
    with pytest.raises(InputError, match=r"no products \(all 1 records skipped\)") as e:
        run_decode(raw, tmp_path / "interim", tmp_path / "m", replace(DECODE, on_error="skip"), progress=False)
    assert e.value.path == str(raw / "train.bson")


def test_a_missing_test_bson_is_found_before_train_is_decoded(tmp_path: Path) -> None:
    raw = raw_dir(tmp_path, [doc(1)], [])
    (raw / "test.bson").unlink()
    (raw / "train.bson").write_bytes(b"\xde\xad\xbe\xef" * 4)  # decoding train would fail first
    with pytest.raises(InputError, match="file not found") as e:
        run_decode(raw, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    assert e.value.path == str(raw / "test.bson")


@pytest.mark.parametrize("text", ["", CATEGORY_CSV.splitlines()[0] + "\n"])
def test_an_empty_category_names_csv_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    raw = raw_dir(tmp_path, [doc(1)], [doc(5, cat=None)])
    (raw / "category_names.csv").write_text(text)
    with pytest.raises(InputError, match="no categories") as e:
        run_decode(raw, tmp_path / "interim", tmp_path / "m", DECODE, progress=False)
    assert e.value.path == str(raw / "category_names.csv")


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_repeated_test_id_is_never_skipped(tmp_path: Path, on_error: str) -> None:
    raw = raw_dir(tmp_path, [doc(1)], [doc(5, cat=None), doc(6, cat=None), doc(5, cat=None)])
    with pytest.raises(InputError, match="repeated test _id 5") as e:
        run_decode(raw, tmp_path / "interim", tmp_path / "m", replace(DECODE, on_error=on_error), progress=False)
    assert e.value.path == str(raw / "test.bson") and e.value.product_id == 5
    assert e.value.offset == len(bson.encode(doc(5, cat=None))) + len(bson.encode(doc(6, cat=None)))
