import hashlib
import json
from dataclasses import replace
from pathlib import Path

import bson
import pandas as pd
import pytest
from PIL import Image

from cdiscount.bson_io import open_store, read_image
from cdiscount.decode import decode_file, run_decode
from cdiscount.errors import InputError
from cdiscount.sample import draw
from conftest import DECODE, REPO, run_stage, write_bson

JPEG = draw.to_jpeg(Image.new("RGB", (8, 8)), 90)  # a whole JPEG: decode checks the structure
CATS = frozenset({10, 20})


def _decode(tmp_path: Path, src: Path, **kw):
    return decode_file(src, tmp_path / "p.parquet", tmp_path / "i.parquet", tmp_path / "s.parquet",
                       labelled=kw.pop("labelled", True), category_ids=kw.pop("category_ids", CATS),
                       on_error=kw.pop("on_error", "raise"), workers=kw.pop("workers", 0),
                       block_size=kw.pop("block_size", 32 << 20), progress=False, **kw)


def test_real_example_products_images_and_categories(kaggle_dir: Path, tmp_path: Path) -> None:
    metrics = run_decode(kaggle_dir, tmp_path / "interim", tmp_path / "metrics", replace(DECODE, workers=2),
                         progress=False)
    assert metrics["train_products"] == 82
    assert metrics["train_images"] == 110
    assert metrics["test_products"] == 82
    assert metrics["categories_present"] == 36
    assert sum(metrics["train_images_per_product"].values()) == 82
    products = pd.read_parquet(tmp_path / "interim" / "train_products.parquet")
    assert products["category_id"].nunique() == 36
    saved = json.loads((tmp_path / "metrics" / "decode.json").read_text())
    assert saved["train_images"] == 110


def test_real_example_offsets_and_md5_match_the_bson(kaggle_dir: Path, tmp_path: Path, example_docs) -> None:
    run_decode(kaggle_dir, tmp_path / "interim", tmp_path / "metrics", DECODE, progress=False)
    images = pd.read_parquet(tmp_path / "interim" / "train_images.parquet")
    store = open_store(tmp_path / "interim", "train")
    by_id = {d["_id"]: d for d in example_docs}
    for row in images.itertuples():
        pic = by_id[row._1]["imgs"][row.img_idx]["picture"]
        assert store.read_image(row._1, row.img_idx) == pic
        assert row.md5 == hashlib.md5(pic).hexdigest()
    p33 = images[images["_id"] == 33]
    assert len(p33) == 2 and p33["md5"].nunique() == 1  # product 33 holds two identical pictures
    assert read_image(tmp_path / "interim", "train", 33, 1) == by_id[33]["imgs"][1]["picture"]


def test_parallel_and_serial_give_identical_tables(tiny_sample: Path, tmp_path: Path) -> None:
    cats = frozenset(pd.read_csv(tiny_sample / "category_names.csv")["category_id"])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _decode(a, tiny_sample / "train.bson", category_ids=cats, workers=0)
    # tiny blocks: many blocks per file, results must still come back in file order
    _decode(b, tiny_sample / "train.bson", category_ids=cats, workers=2, block_size=50_000)
    for name in ("p", "i"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet"))


def _doc(pid, cat=10, pics=(JPEG,)):
    d = {"_id": pid, "imgs": [{"picture": p} for p in pics]}
    if cat is not None:
        d["category_id"] = cat
    return d


BAD_DOCS = {
    "missing_imgs": ({"_id": 2, "category_id": 10}, "missing 'imgs'"),
    "missing_category": (_doc(2, cat=None), "missing 'category_id'"),
    "not_jpeg": (_doc(2, pics=(JPEG, b"\x89PNG\r\n\x1a\n" + bytes(20))), r"imgs\[1\] is not a JPEG"),
    "unknown_category": (_doc(2, cat=99), "category_id 99 is not in category_names.csv"),
}


@pytest.mark.parametrize("reason", sorted(BAD_DOCS))
def test_bad_record_names_file_offset_and_id(tmp_path: Path, reason: str) -> None:
    bad, message = BAD_DOCS[reason]
    src = write_bson(tmp_path / "train.bson", [_doc(1), bad, _doc(3)])
    with pytest.raises(InputError, match=message) as e:
        _decode(tmp_path, src, workers=0)
    assert e.value.path == str(src)
    assert e.value.offset == len(bson.encode(_doc(1)))
    assert e.value.product_id == 2


@pytest.mark.parametrize("reason", sorted(BAD_DOCS))
def test_skip_mode_counts_and_lists_bad_records(tmp_path: Path, reason: str) -> None:
    bad, _ = BAD_DOCS[reason]
    src = write_bson(tmp_path / "train.bson", [_doc(1), bad, _doc(3)])
    stats = _decode(tmp_path, src, workers=2, on_error="skip")
    assert stats.products == 2 and stats.skipped == {reason: 1}
    skipped = pd.read_parquet(tmp_path / "s.parquet")
    assert skipped["_id"].tolist() == [2] and skipped["reason"].tolist() == [reason]
    assert pd.read_parquet(tmp_path / "p.parquet")["_id"].tolist() == [1, 3]


def test_repeated_id_raises_or_is_skipped(tmp_path: Path) -> None:
    src = write_bson(tmp_path / "train.bson", [_doc(1), _doc(2, pics=(JPEG, JPEG)), _doc(1)])
    with pytest.raises(InputError, match="repeated _id .first seen at byte offset 0.") as e:
        _decode(tmp_path, src, workers=0)
    assert e.value.product_id == 1
    stats = _decode(tmp_path, src, workers=0, on_error="skip")
    assert stats.skipped == {"repeated_id": 1} and stats.products == 2 and stats.images == 3
    assert pd.read_parquet(tmp_path / "i.parquet")["_id"].tolist() == [1, 2, 2]


def test_ascending_ids_need_no_per_product_arrays(tmp_path: Path, monkeypatch) -> None:
    """Ids ascending through the file (the Kaggle files) cannot repeat: decode keeps a few numbers per
    block, never the whole file's ids (8 bytes x 7 M products, then sorted); other orders still check."""
    import cdiscount.decode as decode

    docs = [_doc(i, pics=(JPEG,) * (1 + i // 3 % 3)) for i in range(1, 400, 3)]
    src = write_bson(tmp_path / "train.bson", docs)
    real = decode._repeated_rows

    def refuse(ids):
        raise AssertionError("held every _id of an ascending file")

    monkeypatch.setattr(decode, "_repeated_rows", refuse)
    stats = _decode(tmp_path, src, block_size=2048, workers=2)  # many blocks
    n_pics = [len(d["imgs"]) for d in docs]
    assert stats.products == len(docs) and stats.images == sum(n_pics)
    assert stats.images_per_product == {k: n_pics.count(k) for k in (1, 2, 3)}
    assert pd.read_parquet(tmp_path / "p.parquet")["_id"].tolist() == [d["_id"] for d in docs]
    shuffled = write_bson(tmp_path / "t2.bson", docs[60:] + docs[:60] + [docs[7]])  # repeat, blocks apart
    monkeypatch.setattr(decode, "_repeated_rows", real)
    stats = _decode(tmp_path, shuffled, block_size=2048, on_error="skip")
    assert stats.skipped == {"repeated_id": 1} and stats.products == len(docs)
    images = pd.read_parquet(tmp_path / "i.parquet")
    assert len(images) == stats.images == sum(n_pics)
    assert images["_id"].drop_duplicates().tolist() == [d["_id"] for d in docs[60:] + docs[:60]]


def test_invalid_bson_document_is_reported(tmp_path: Path) -> None:
    good = bson.encode(_doc(1))
    broken = bytearray(bson.encode(_doc(2)))
    broken[-1] = 7  # a document must end with a NUL byte
    src = tmp_path / "train.bson"
    src.write_bytes(good + bytes(broken))
    with pytest.raises(InputError, match="invalid BSON document") as e:
        _decode(tmp_path, src, workers=0)
    assert e.value.offset == len(good)
    assert _decode(tmp_path, src, workers=0, on_error="skip").skipped == {"invalid_bson": 1}


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_truncated_and_garbage_files_always_fail(tmp_path: Path, on_error: str) -> None:
    data = b"".join(bson.encode(_doc(i)) for i in range(3))
    trunc = tmp_path / "trunc.bson"
    trunc.write_bytes(data[:-10])
    with pytest.raises(InputError, match="truncated file") as e:
        _decode(tmp_path, trunc, workers=0, on_error=on_error)
    assert e.value.offset == 2 * len(bson.encode(_doc(0)))
    garbage = tmp_path / "garbage.bson"
    garbage.write_bytes(data + b"\xde\xad\xbe\xef" * 8)
    with pytest.raises(InputError, match="invalid BSON document length") as e:
        _decode(tmp_path, garbage, workers=2, on_error=on_error)
    assert e.value.offset == len(data)


def test_cli_exits_nonzero_and_writes_nothing_on_bad_input(tmp_path: Path, monkeypatch, caplog) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_bson(raw / "train.bson", [_doc(1), _doc(2, cat=99)])
    write_bson(raw / "test.bson", [_doc(5, cat=None)])
    (raw / "category_names.csv").write_text(
        "category_id,category_level1,category_level2,category_level3\n10,A,B,C\n20,A,B,D\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(f"data:\n  raw_dir: {raw}\ndecode:\n  on_error: raise\n  workers: 0\n"
                                      "  block_size_mb: 32\n")
    monkeypatch.chdir(work)
    assert run_stage("decode") == 2
    assert "train.bson" in caplog.text and "_id 2" in caplog.text and "category_id 99" in caplog.text
    leftovers = [p for p in work.rglob("*") if p.is_file() and p.name != "params.yaml"]
    assert leftovers == []
    (work / "params.yaml").write_text(f"data:\n  raw_dir: {raw}\ndecode:\n  workers: 0\n  on_error: skip\n"
                                      "  block_size_mb: 32\n")
    assert run_stage("decode") == 0
    metrics = json.loads((work / "metrics" / "decode.json").read_text())
    assert metrics["train_skipped_records"] == 1 and metrics["train_skipped_by_reason"] == {"unknown_category": 1}
    assert metrics["train_products"] == 1 and metrics["test_products"] == 1
