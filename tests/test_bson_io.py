import hashlib
from pathlib import Path

import bson
import pytest

from cdiscount.blocks import iter_documents
from cdiscount.bson_io import ImageStore, frame, picture_offsets
from cdiscount.errors import InputError

JPEG = b"\xff\xd8\xff\xe0"


def test_frame_splits_whole_documents_and_stops_at_partial() -> None:
    docs = [bson.encode({"_id": i, "imgs": [{"picture": JPEG + bytes(50 * i)}]}) for i in range(3)]
    data = b"".join(docs)
    spans, consumed = frame(memoryview(data + docs[0][:7]), 100, "x.bson")
    assert [s for s, _ in spans] == [0, len(docs[0]), len(docs[0]) + len(docs[1])]
    assert consumed == len(data)


def test_frame_rejects_impossible_length_with_offset() -> None:
    data = bson.encode({"_id": 1}) + b"\xff\xff\xff\x7f garbage"
    with pytest.raises(InputError, match="invalid BSON document length") as e:
        frame(memoryview(data), 1000, "f.bson")
    assert e.value.offset == 1000 + len(bson.encode({"_id": 1}))


def test_picture_offsets_skip_key_bytes_inside_earlier_picture() -> None:
    tricky = JPEG + b"\x05picture\x00" + b"\x10\x00\x00\x00\x00" + bytes(40)  # looks like an element header
    pics = [tricky, JPEG + b"second"]
    raw = bson.encode({"_id": 7, "imgs": [{"picture": p} for p in pics], "category_id": 1})
    offs = picture_offsets(raw, pics)
    assert [raw[o : o + len(p)] for o, p in zip(offs, pics)] == pics


def test_iter_documents_reports_truncation(tmp_path: Path) -> None:
    data = bson.encode({"_id": 1, "imgs": []}) + bson.encode({"_id": 2, "imgs": []})
    p = tmp_path / "t.bson"
    p.write_bytes(data[:-3])
    with pytest.raises(InputError, match="truncated") as e:
        list(iter_documents(p))
    assert e.value.offset == len(bson.encode({"_id": 1, "imgs": []}))
    p.write_bytes(data * 3)
    assert [d["_id"] for _, d in iter_documents(p, block_size=40)] == [1, 2] * 3  # across many blocks


def test_image_store_reads_back_exact_bytes(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pics = {(5, 0): JPEG + b"a" * 30, (5, 1): JPEG + b"b" * 31, (2, 0): JPEG + b"c" * 32}
    raw = bson.encode({"_id": 5, "imgs": [{"picture": pics[5, 0]}, {"picture": pics[5, 1]}]})
    raw2 = bson.encode({"_id": 2, "imgs": [{"picture": pics[2, 0]}]})
    (tmp_path / "x.bson").write_bytes(raw + raw2)
    offs = picture_offsets(raw, [pics[5, 0], pics[5, 1]]) + [len(raw) + o for o in picture_offsets(raw2, [pics[2, 0]])]
    pq.write_table(pa.table({"_id": [5, 5, 2], "img_idx": pa.array([0, 1, 0], pa.int8()),
                             "jpeg_offset": offs, "jpeg_length": [len(pics[k]) for k in [(5, 0), (5, 1), (2, 0)]]}),
                   tmp_path / "i.parquet")
    store = ImageStore(tmp_path / "i.parquet", tmp_path / "x.bson")
    for (pid, idx), pic in pics.items():
        assert hashlib.md5(store.read_image(pid, idx)).digest() == hashlib.md5(pic).digest()
    with pytest.raises(KeyError):
        store.read_image(3, 0)
    with pytest.raises(KeyError):
        store.read_image(2, 1)
