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


def _jpegs() -> list[bytes]:
    """Real JPEGs of several kinds, then each cut, padded, or with a header byte changed."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    good = []
    for k, save in enumerate([{}, {"progressive": True}, {"exif": exif.tobytes()}, {"quality": 20, "subsampling": 0},
                              {"optimize": True}, {"dpi": (300, 300)}]):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (5 + k, 9, 3), dtype=np.uint8)).save(buf, format="JPEG", **save)
        good.append(buf.getvalue())
    out = list(good)
    for pic in good:
        out += [pic[:n] + b"\xff\xd9" for n in (2, 3, 4, 6, 20, 100)] + [pic + bytes(3), b"\xff\xd8\xff" + bytes(2)]
        markers = [i + d for i in range(min(len(pic), 400) - 6) if pic[i] == 0xFF for d in range(6)]
        for _ in range(150):
            bad = bytearray(pic)
            for _ in range(int(rng.integers(1, 3))):
                at = int(rng.choice(markers)) if rng.random() < 0.7 else int(rng.integers(0, min(len(bad), 300)))
                bad[at] = int(rng.choice([0, 1, 2, 0xFF, 0xD0, 0xD8, 0xD9, 0xDA, 0xC0, 0xC4, rng.integers(256)]))
            out.append(bytes(bad))
    return out


def test_whole_jpegs_agrees_with_the_byte_by_byte_checks() -> None:
    import numpy as np

    from cdiscount.bson_io import is_jpeg, jpeg_problem, whole_jpegs

    pics = _jpegs()
    blob = b"".join(pics)
    lengths = np.array([len(p) for p in pics])
    fast = whole_jpegs(np.frombuffer(blob, np.uint8), np.cumsum(lengths) - lengths, lengths)
    exact = np.array([is_jpeg(p) and jpeg_problem(p) is None for p in pics])
    padded = np.array([p[-1:] == b"\x00" for p in pics])  # left to the exact checks on purpose
    assert not (fast & ~exact).any()  # never passes a picture the exact checks reject
    assert (fast == exact)[~padded].all()  # and passes every other one they accept
    assert exact.sum() > 20 and (~exact).sum() > 200


def test_kaggle_spans_are_frames_spans_or_nothing() -> None:
    import numpy as np

    from cdiscount.bson_io import kaggle_spans

    def doc(i, **kw):
        return bson.encode({"_id": i, "imgs": [{"picture": JPEG + bytes(30 * i)}], "category_id": 5, **kw})

    data = b"".join(doc(i) for i in range(20))
    starts, lengths = kaggle_spans(memoryview(data))
    assert list(zip(starts.tolist(), lengths.tolist())) == frame(memoryview(data), 0, "x.bson")[0]
    assert kaggle_spans(memoryview(bson.encode({"a": 1}) + data)) is None  # a document without a leading _id
    stray = bson.encode({"_id": 1, "imgs": [{"picture": JPEG + b"\x10_id\x00" + bytes(9)}]})  # the pattern in a picture
    assert kaggle_spans(memoryview(data + stray)) is None
    assert kaggle_spans(memoryview(data[: len(doc(0))] + data[len(doc(0)) + 1 :])) is None  # a broken chain
    assert kaggle_spans(memoryview(b"")) is None
    assert np.array_equal(kaggle_spans(memoryview(data))[0], starts)
