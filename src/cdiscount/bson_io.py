"""Low-level access to Kaggle's BSON files: framing, picture offsets, random access.

The competition files are a plain concatenation of BSON documents
``{_id, category_id?, imgs: [{picture: <JPEG bytes>}, ...]}``. We never unpack them into
loose files: the decode stage records, for every picture, its byte offset and length inside
the source BSON, and :class:`ImageStore` reads any picture back with one ``pread``.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .errors import InputError

#: BSON's own limit on one document (MongoDB's 16 MiB).
MAX_DOCUMENT = 16 * 1024 * 1024
#: Element header of a binary field named ``picture`` (type 0x05, cstring key).
_PICTURE_KEY = b"\x05picture\x00"
_JPEG_MAGIC = b"\xff\xd8\xff"
_INT32 = struct.Struct("<i")


#: Value sizes of the fixed-size BSON element types (double, undefined, ObjectId, bool, datetime,
#: null, int32, timestamp, int64, decimal128, max key, min key).
_FIXED_SIZE = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
               0x7F: 0, 0xFF: 0}


def document_id(buf: bytes | memoryview, pos: int) -> int | None:
    """The ``_id`` of the document at ``buf[pos]`` when its first element is an integer ``_id``
    (as in Kaggle's files), whatever its length prefix says; else None."""
    if bytes(buf[pos + 5 : pos + 9]) != b"_id\x00":
        return None
    kind, value = buf[pos + 4], pos + 9
    if kind == 0x10 and value + 4 <= len(buf):
        return struct.unpack_from("<i", buf, value)[0]
    if kind == 0x12 and value + 8 <= len(buf):
        return struct.unpack_from("<q", buf, value)[0]
    return None


def elements_end(buf: bytes, pos: int) -> int | None:
    """Where the document at ``buf[pos]`` really ends (past its closing 0x00) according to its
    elements, whatever its length prefix says; None if they cannot be walked within ``buf``.

    Walks the top-level elements only (nested documents are skipped by their own length): cheap,
    and used only once a length prefix is already suspect.
    """
    end = min(len(buf), pos + MAX_DOCUMENT)
    i = pos + 4
    while i < end:
        kind = buf[i]
        if kind == 0:
            return i + 1
        key_end = buf.find(b"\x00", i + 1, end)
        if key_end < 0:
            return None
        size = _value_size(buf, key_end + 1, kind, end)
        if size is None:
            return None
        i = key_end + 1 + size
    return None


def _value_size(buf: bytes, i: int, kind: int, end: int) -> int | None:
    """Bytes taken by the value of a ``kind`` element starting at ``buf[i]``; None if impossible."""
    if kind in _FIXED_SIZE:
        return _FIXED_SIZE[kind]
    if kind == 0x0B:  # regex: two cstrings
        first = buf.find(b"\x00", i, end)
        second = buf.find(b"\x00", first + 1, end) if first >= 0 else -1
        return None if second < 0 else second + 1 - i
    if i + 4 > end:
        return None
    (n,) = struct.unpack_from("<i", buf, i)
    if kind in (0x02, 0x0D, 0x0E):  # string, code, symbol: int32 size (with its NUL), bytes
        return 4 + n if n >= 1 else None
    if kind in (0x03, 0x04, 0x0F):  # document, array, code with scope: int32 size of the whole
        return n if n >= 5 else None
    if kind == 0x05:  # binary: int32 size, subtype, bytes
        return 5 + n if n >= 0 else None
    if kind == 0x0C:  # DBPointer: string, 12-byte ObjectId
        return 16 + n if n >= 1 else None
    return None


def looks_like_document(buf: bytes | memoryview, pos: int) -> bool:
    """A plausible length prefix at ``buf[pos]`` followed by an integer ``_id`` element."""
    if pos + 4 > len(buf):
        return False
    return 5 <= struct.unpack_from("<i", buf, pos)[0] <= MAX_DOCUMENT and document_id(buf, pos) is not None


def length_error(buf: bytes, pos: int, path: str | Path, *, end_is_boundary: bool,
                 base: int = 0) -> InputError | None:
    """The error for the document at ``buf[pos]`` if its length prefix is wrong, else None.

    Wrong means: its elements end elsewhere than the prefix says, and where they end there is
    a plausible next document (or the end of ``buf``, when ``end_is_boundary``). The rest of
    the file cannot be framed after it, so this is an error even with ``on_error: skip``.
    """
    real_end = elements_end(buf, pos)
    if real_end is None or pos + 4 > len(buf):
        return None
    (declared,) = struct.unpack_from("<i", buf, pos)
    if real_end - pos == declared:
        return None
    if not (looks_like_document(buf, real_end) or (end_is_boundary and real_end == len(buf))):
        return None
    return InputError(path, f"bad length prefix: the document declares {declared} bytes but its elements end "
                            f"after {real_end - pos}", offset=base + pos, product_id=document_id(buf, pos))


def frame(buf: memoryview, base_offset: int, path: str | Path) -> tuple[list[tuple[int, int]], int]:
    """Split ``buf`` into complete BSON documents.

    Returns ``(spans, consumed)`` where spans are ``(start, length)`` relative to ``buf`` and
    ``consumed`` is where the first incomplete document starts. A length prefix that cannot be
    a BSON document (under 5 bytes or over 16 MiB) is a framing error: the rest of the file
    cannot be trusted, so it is raised even in ``on_error: skip`` mode.
    """
    spans: list[tuple[int, int]] = []
    pos, end = 0, len(buf)
    unpack, add = _INT32.unpack_from, spans.append  # a tight loop: once per document
    while pos + 4 <= end:
        (length,) = unpack(buf, pos)
        if not 5 <= length <= MAX_DOCUMENT:
            raise InputError(
                path,
                f"bad length prefix: invalid BSON document length {length} (garbage bytes or a file that is not BSON)",
                offset=base_offset + pos,
                product_id=document_id(buf, pos),
            )
        if pos + length > end:
            break
        add((pos, length))
        pos += length
    return spans, pos


#: The name of a Kaggle document's first element, ``_id``. Searched as a literal (CPython's fast substring
#: search, about 1 GB/s) and its type byte (int32 / int64) checked in numpy: the character-class pattern
#: ``[\x10\x12]_id\x00`` made the regex engine try every byte (118 MB/s, half of decode's time on 3-7 KB pictures).
_ID_NAME = re.compile(rb"_id\x00")
_ID_TYPES = np.array([0x10, 0x12], dtype=np.uint8)


def kaggle_spans(buf: memoryview) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`frame`'s spans of a buffer of whole documents, found without walking them one by one in Python.

    Every document laid out as Kaggle's begins with its ``_id`` element: a C scan finds those, and the
    spans are taken only if they chain exactly (the first at 0, each ending where the next begins, the
    last at the end of ``buf``, every length possible): then they are the file's framing, whatever else
    the bytes hold. Otherwise (another layout, a stray match inside a picture) None: use :func:`frame`.
    """
    b = np.frombuffer(buf, np.uint8)
    names = np.array([m.start() for m in _ID_NAME.finditer(buf)], dtype=np.int64)
    names = names[names >= 5]
    starts = names[np.isin(b[names - 1], _ID_TYPES)] - 5  # the type byte, then the document's length before it
    if not len(starts) or starts[0] != 0:
        return None
    lengths = _le(_window(b, starts, 4), 0, 4)
    ends = starts + lengths
    if ends[-1] != len(buf) or (ends[:-1] != starts[1:]).any() or (lengths < 5).any() or (lengths > MAX_DOCUMENT).any():
        return None
    return starts, lengths


def picture_offsets(buf: bytes | bytearray, pictures: list[bytes], start: int = 0, end: int | None = None) -> list[int]:
    """Offsets in ``buf`` of the JPEG data of each picture of the document at ``buf[start:end]``.

    The pictures come from :func:`bson.decode` of that document. Their binary elements appear
    in document order, so each is the first ``picture`` element after the previous one whose
    declared length and first bytes match. A binary of subtype 2 (BSON's old binary) holds an
    inner int32 length before the data, which :func:`bson.decode` strips: the offset is past it.
    """
    end = len(buf) if end is None else end
    offsets: list[int] = []
    search = start
    for pic in pictures:
        while True:
            key = buf.find(_PICTURE_KEY, search, end)
            if key < 0:
                raise ValueError("picture element not found in raw document")
            data = _binary_data(buf, key + len(_PICTURE_KEY), len(pic), end)
            if data is not None and buf[data : data + min(len(pic), 16)] == pic[:16]:
                break
            search = key + 1  # the key bytes occurred inside other data: look further
        offsets.append(data)
        search = data + len(pic)
    return offsets


def _binary_data(buf: bytes | bytearray, at: int, n: int, end: int) -> int | None:
    """Where the ``n`` data bytes of the binary value at ``buf[at]`` start, if its lengths say ``n``."""
    if at + 5 > end:
        return None
    length, subtype = struct.unpack_from("<iB", buf, at)
    if subtype != 2:
        return at + 5 if length == n else None
    # old binary: int32 length, subtype 2, int32 length of the data, data
    if at + 9 > end or length != n + 4 or struct.unpack_from("<i", buf, at + 5)[0] != n:
        return None
    return at + 9


def is_jpeg(data: bytes) -> bool:
    """True if ``data`` starts with a JPEG SOI marker followed by a marker byte."""
    return data[:3] == _JPEG_MAGIC


#: Frame header (SOF) markers of every JPEG coding process (C4 DHT, C8 JPG and CC DAC are not frames).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: Markers without a length field: TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def jpeg_problem(data: bytes) -> str | None:
    """What makes ``data`` not a whole JPEG, or None if it looks like one.

    Cheap (pure Python on a few header bytes, nothing decoded): a truncated picture or garbage
    behind a JPEG header otherwise passes decode and crashes dedup or training far from its
    ``_id``. Requires the end-of-image marker FFD9 at the end (trailing zero padding, which
    some encoders add, allowed) and walks the marker segments to the frame header (SOF),
    whose width and height must be > 0.
    """
    if data[:2] != b"\xff\xd8":
        return "no start-of-image marker (FFD8)"
    end = len(data) if data[-1:] != b"\x00" else len(data.rstrip(b"\x00"))
    if data[end - 2 : end] != b"\xff\xd9" or end < 4:
        return f"no end-of-image marker (FFD9): truncated? (last bytes {data[max(2, end - 8) : end].hex() or 'none'})"
    return _frame_header_problem(data, end)


def _frame_header_problem(data: bytes, end: int) -> str | None:
    """Walk the marker segments from the SOI to the frame header and check its size."""
    pos = 2
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return f"header: no marker at picture byte {pos} (found {data[pos]:02x})"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            return f"header: marker FF{marker:02X} at picture byte {pos} before any frame header (SOF)"
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > end:
            return f"header: segment FF{marker:02X} at picture byte {pos} has an impossible length {length}"
        if marker in _SOF:
            if length < 8:
                return f"header: frame header at picture byte {pos} too short ({length} bytes)"
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return None if width and height else f"header: frame of {width}x{height} pixels"
        pos += 2 + length
    return "header: no frame header (SOF) before the end of the picture"


#: How many marker segments :func:`whole_jpegs` walks per picture before leaving it to :func:`jpeg_problem`
#: (real pictures reach their frame header within 3-6: APP0, DQT, DQT, SOF0, or a few APPn more).
_MAX_SEGMENTS = 32
_SOF_TABLE = np.zeros(256, dtype=bool)
_SOF_TABLE[sorted(_SOF)] = True
_STANDALONE_TABLE = np.zeros(256, dtype=bool)
_STANDALONE_TABLE[sorted(_STANDALONE)] = True


def _window(b: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` bytes of ``b`` from each of ``idx``, as an [n, k] uint8 array, in one gather; positions
    past either end read as the first / last byte (callers mask those rows out by their own bounds checks)."""
    return np.take(b, idx[:, None] + np.arange(k), mode="clip")


def _le(w: np.ndarray, at: int, k: int) -> np.ndarray:
    """Signed little-endian ``k``-byte integers (BSON's int32 / int64) at column ``at`` of a window."""
    return np.ascontiguousarray(w[:, at : at + k]).view(f"<i{k}")[:, 0].astype(np.int64)


def _be16(w: np.ndarray, at: int) -> np.ndarray:
    """Unsigned big-endian 16-bit integers (JPEG's) at column ``at`` of a window."""
    return w[:, at].astype(np.int64) << 8 | w[:, at + 1]


def _is(w: np.ndarray, at: int, pattern: bytes) -> np.ndarray:
    """Whether ``pattern`` sits at column ``at`` of each row of a window."""
    return (w[:, at : at + len(pattern)] == np.frombuffer(pattern, np.uint8)).all(axis=1)


def whole_jpegs(b: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Vectorised :func:`is_jpeg` and ``jpeg_problem(...) is None`` for the pictures ``b[starts : starts + lengths]``.

    True only where the picture certainly passes both checks; False where it fails them *or* where
    this fast walk gives up (trailing zero padding, more than :data:`_MAX_SEGMENTS` segments before the
    frame header): callers run the byte-exact checks on the False ones (for the verdict and its message).
    """
    n = lengths
    end = starts + n
    ok = (n >= 4) & _is(_window(b, starts, 3), 0, _JPEG_MAGIC) & _is(_window(b, end - 2, 2), 0, b"\xff\xd9")
    act = np.flatnonzero(ok)
    pos = starts[act] + 2
    stop = end[act]
    found = np.zeros(len(n), dtype=bool)
    for _ in range(4 * _MAX_SEGMENTS):  # fill bytes and standalone markers are steps too
        live = pos + 4 <= stop
        act, pos, stop = act[live], pos[live], stop[live]
        if not len(act):
            break
        w = _window(b, pos, 9)  # marker, segment length, and a frame header's height and width
        marker = w[:, 1]
        good = w[:, 0] == 0xFF
        fill = good & (marker == 0xFF)
        alone = good & ~fill & _STANDALONE_TABLE[marker]
        seg = good & ~fill & ~alone & (marker != 0xD8) & (marker != 0xD9) & (marker != 0xDA)
        length = _be16(w, 2)
        seg &= (length >= 2) & (pos + 2 + length <= stop)
        sof = seg & _SOF_TABLE[marker] & (length >= 8)
        found[act[sof]] = (_be16(w, 5)[sof] > 0) & (_be16(w, 7)[sof] > 0)
        step = np.where(fill, 1, np.where(alone, 2, 2 + length))
        keep = fill | alone | (seg & ~_SOF_TABLE[marker])
        act, pos, stop = act[keep], (pos + step)[keep], stop[keep]
    return found


@dataclass
class KaggleLayout:
    """Where :func:`kaggle_layout` found the fields of the documents it could read (``ok``)."""

    ok: np.ndarray  # [documents] bool: laid out exactly as Kaggle's, every length consistent
    ids: np.ndarray  # [documents] int64 (meaningful where ok)
    categories: np.ndarray  # [documents] int64 (-1 where there is none)
    n_imgs: np.ndarray  # [documents] int64
    pic_doc: np.ndarray  # [pictures] document row of each picture of the ok documents (document, then picture order)
    pic_idx: np.ndarray  # [pictures] index of the picture in its document
    pic_start: np.ndarray  # [pictures] offset of the JPEG data in ``b``
    pic_len: np.ndarray  # [pictures] bytes of JPEG data


def kaggle_layout(b: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, labelled: bool) -> KaggleLayout:
    """Read the documents ``b[starts : starts + lengths]`` laid out exactly as Kaggle's, all at once.

    That layout is ``{_id: int32|int64, imgs: [{picture: binary subtype 0}, ...] (array keys "0", "1",
    ...), category_id: int32|int64}`` (``category_id`` optional where not ``labelled``), in that order,
    every nested length prefix consistent and every document / array / sub-document closed by its 0x00:
    a document that passes is valid BSON and decodes to exactly these values. Anything else (another
    layout, an empty ``imgs``, a broken length, old binary subtype 2, ...) is ``ok = False``, for the
    caller's general path (``bson.decode``, with its error messages). Vectorised over documents, one
    step per picture index, so the per-document Python cost of decoding disappears.
    """
    s = starts.astype(np.int64)
    e = s + lengths  # one past the document's closing 0x00
    w = _window(b, s, 27)  # length, _id element (int32 or int64), imgs element header
    wide = w[:, 4] == 0x12
    ok = (lengths >= 17) & ((w[:, 4] == 0x10) | wide) & _is(w, 5, b"_id\x00")
    ids = np.where(wide, _le(w, 9, 8), _le(w, 9, 4))
    p = s + np.where(wide, 17, 13)  # the imgs element
    head = np.where(wide[:, None], w[:, 17:27], w[:, 13:23])
    ok &= (p + 15 <= e) & _is(head, 0, b"\x04imgs\x00")
    array_end = p + 6 + _le(head, 6, 4)  # one past the array's closing 0x00
    ok &= (array_end >= p + 11) & (array_end <= e - 1)
    n_imgs = np.zeros(len(s), dtype=np.int64)
    pictures: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
    act = np.flatnonzero(ok)
    q = p[act] + 10  # the next element of the array
    j = 0
    while len(act):
        stop = array_end[act]
        key = b"\x03" + str(j).encode() + b"\x00"
        k = len(key)
        w = _window(b, q, k + 18)  # element header, then the sub-document {picture: ...} up to the subtype
        closed = w[:, 0] == 0
        bad = closed & ((q != stop - 1) | (j == 0))
        r = q + k  # the sub-document
        size = _le(w, k + 13, 4)
        data_end = r + 18 + size
        more = (~closed & (r + 19 <= stop) & _is(w, 0, key) & _is(w, k + 4, b"\x05picture\x00") & (w[:, k + 17] == 0)
                & (size >= 0) & (data_end <= stop - 2) & (_le(w, k, 4) == data_end + 1 - r))
        more &= _window(b, data_end, 1)[:, 0] == 0
        bad |= ~closed & ~more
        ok[act[bad]] = False
        if more.any():
            pictures.append((act[more], j, r[more] + 18, size[more]))
            n_imgs[act[more]] += 1
        act, q = act[more], data_end[more] + 1
        j += 1
    t = array_end
    w = _window(b, t, 22)  # category_id element (int32 or int64) and the document's closing 0x00
    cat_wide = w[:, 0] == 0x12
    categories = np.where(cat_wide, _le(w, 13, 8), _le(w, 13, 4))
    cat_end = np.where(cat_wide, 21, 17)  # the closing 0x00 after a category element, from t
    closing = np.where(cat_wide, w[:, 21], w[:, 17])
    has_cat = ((w[:, 0] == 0x10) | cat_wide) & _is(w, 1, b"category_id\x00") & (t + cat_end == e - 1) & (closing == 0)
    bare = (w[:, 0] == 0) & (t == e - 1)
    ok &= has_cat if labelled else (has_cat | bare)
    categories = np.where(has_cat, categories, -1)
    if pictures:
        doc = np.concatenate([d for d, *_ in pictures])
        idx = np.concatenate([np.full(len(d), j, np.int64) for d, j, *_ in pictures])
        order = np.lexsort((idx, doc))
        starts_ = np.concatenate([x for *_, x, _ in pictures])[order]
        lens = np.concatenate([x for *_, x in pictures])[order]
        doc, idx = doc[order], idx[order]
        mine = ok[doc]  # drop the pictures of documents found broken after them
        doc, idx, starts_, lens = doc[mine], idx[mine], starts_[mine], lens[mine]
    else:
        doc = idx = starts_ = lens = np.zeros(0, np.int64)
    return KaggleLayout(ok, ids, categories, n_imgs, doc, idx, starts_, lens)


class ImageStore:
    """Random access to the JPEG bytes of one split, through the decode stage's image index.

    Holds only the index columns (about 24 bytes per image); opens the BSON lazily and
    re-opens it after ``fork`` so DataLoader workers can share one store.
    """

    def __init__(self, images_parquet: str | Path, bson_path: str | Path) -> None:
        table = pq.read_table(images_parquet, columns=["_id", "img_idx", "jpeg_offset", "jpeg_length"])
        self.ids = table.column("_id").to_numpy()
        self.img_idx = table.column("img_idx").to_numpy()
        self.offsets = table.column("jpeg_offset").to_numpy()
        self.lengths = table.column("jpeg_length").to_numpy()
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[order]
        self._first_row = order
        self.bson_path = Path(bson_path)
        if not self.bson_path.exists():
            raise InputError(self.bson_path, "source BSON of the image index not found")
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.ids)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.bson_path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def read_row(self, row: int) -> bytes:
        """JPEG bytes of the ``row``-th image of the index."""
        length = int(self.lengths[row])
        data = os.pread(self._file(), length, int(self.offsets[row]))
        if len(data) != length:
            raise InputError(self.bson_path, "file shorter than its image index (changed since decode?)",
                             offset=int(self.offsets[row]), product_id=int(self.ids[row]))
        return data

    def row_of(self, product_id: int, img_idx: int = 0) -> int:
        """Index row of image ``img_idx`` of product ``product_id``."""
        i = int(np.searchsorted(self._sorted_ids, product_id))
        if i >= len(self._sorted_ids) or self._sorted_ids[i] != product_id:
            raise KeyError(f"_id {product_id} not in {self.bson_path}")
        first = int(self._first_row[i])
        row = first + img_idx
        if img_idx < 0 or row >= len(self.ids) or self.ids[row] != product_id or self.img_idx[row] != img_idx:
            raise KeyError(f"_id {product_id} has no image {img_idx}")
        return row

    def read_image(self, product_id: int, img_idx: int = 0) -> bytes:
        """JPEG bytes of image ``img_idx`` of product ``product_id``."""
        return self.read_row(self.row_of(product_id, img_idx))

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"], state["_pid"] = None, -1
        return state


def source_bson(interim_dir: str | Path, split: str) -> Path:
    """The BSON file the decode stage indexed for ``split``, checked to be the one it read (same size)."""
    interim_dir = Path(interim_dir)
    if not (interim_dir / "sources.json").is_file():
        raise InputError(interim_dir, "no decode outputs here (sources.json missing): run `dvc repro decode` first")
    sources = json.loads((interim_dir / "sources.json").read_text())
    src = Path(sources[split]["path"])
    if src.exists() and src.stat().st_size != sources[split]["size"]:
        raise InputError(src, f"size changed since decode ({sources[split]['size']} bytes then): re-run decode")
    return src


def open_store(interim_dir: str | Path, split: str) -> ImageStore:
    """Random access to the pictures of ``split`` ('train' or 'test') after the decode stage."""
    return ImageStore(Path(interim_dir) / f"{split}_images.parquet", source_bson(interim_dir, split))


def read_image(interim_dir: str | Path, split: str, product_id: int, img_idx: int = 0) -> bytes:
    """JPEG bytes of one picture, e.g. ``read_image('data/interim', 'train', 33, 1)``. Opens the index each call:
    use :func:`open_store` in loops."""
    store = open_store(interim_dir, split)
    try:
        return store.read_image(product_id, img_idx)
    finally:
        store.close()
