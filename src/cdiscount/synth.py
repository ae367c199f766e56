"""``cdiscount synth``: a Kaggle-format Cdiscount at a fraction of the real scale, for rehearsals.

The embedded sample (:mod:`cdiscount.sample`) is 3,000 products in 36 categories: it checks that
the pipeline is right, not that it holds at 7 M products and 5,270 categories. This writes
``train.bson``, ``test.bson`` and ``category_names.csv`` (the official file, verbatim) with
``round(fraction * real)`` products and the real structure:

- **Category frequencies**: a Zipf-Mandelbrot law ``w(rank) ~ 1 / (rank + 113) ** 2.28`` over the
  5,270 official categories, ranks shuffled by the seed. Pure Zipf (``1 / rank ** a``) cannot fit
  the real file at both ends: its head is far too steep (the real largest categories are nearly
  level, each around 70 k to 80 k products). The offset flattens the head and the exponent sets the tail;
  both are fitted so that at full scale the largest category holds about 79.6 k products and the
  smallest about 12, the extremes public analyses of the real ``train.bson`` report (not
  re-measured here: the real file is not in this repository). From a fraction of 0.083 (where
  the law gives the smallest category one product), so at 1.0, every category gets at least one.
- **Pictures per product**: 1 to 4 with shares :data:`IMAGES_PER_PRODUCT`, mean 1.7499 =
  12,371,293 / 7,069,896 (the real totals); the sample's 62/19/8/11 % (mean 1.68) with 3.3
  points moved from one picture to four.
- **Duplicates**: 37 % of train pictures repeat an earlier one (the real 12.4 M pictures hold
  7.8 M distinct images): whole products re-listed from an earlier product of the same
  category, plus placeholders shared by every category; 42 % of test products re-list a train
  product's pictures. Relists draw from bounded pools (:data:`RING` recent products per category,
  :data:`TRAIN_RESERVOIR` train products for test), referenced by byte offset into the file
  being written, so memory does not grow with the fraction.
- **Pictures carry their category's signal**: drawn by the sample's own code
  (:mod:`cdiscount.sample.draw`, product by product as ``generator._Maker`` does: level-1 scene,
  a style point per category, covers with titles from the category's name), at 180 px like the
  real pictures, then scaled to ``picture_px``.

Pictures, two modes (``pictures``): ``draw`` (the default) draws every new picture, about 9 ms of
one core each, 24 core-hours at F = 1.0; ``bank`` draws the first :data:`BANK_SIZE` new pictures of
each category (the same drawing code, the same random streams) and gives every later new picture of
the category a bank entry picked at random, made unique by a JPEG comment segment (COM, ``FFFE``)
naming its product and slot: no pixel is changed and nothing is re-encoded, so it costs a copy of
the bytes, every picture still decodes, and MD5 duplicates are exactly the relists and placeholders
of ``draw`` mode (the plan, a separate random stream, is the same in both modes). The bank holds at
most ``5,270 x (BANK_SIZE + 3)`` pictures whatever the fraction (about 60 MB at 32 px). What it
costs in realism: products of a category repeat a few drawings *pixel for pixel* under distinct
MD5s, so picture-similarity methods (the organiser's baseline) and a memorising backbone score
higher than on ``draw`` data; use ``bank`` to measure time and memory, ``draw`` to measure accuracy.

Everything streams (documents are encoded and written one by one into a temporary folder that
replaces the output folder only when complete), and the bytes depend only on the seed: each
product draws its pictures from its own random stream, so ``workers`` changes the speed, never
the output.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, BinaryIO

import bson
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .atomic import atomic_dir
from .errors import ConfigError, WorkerLost
from .sample import draw
from .sample.vocabulary import FILLER_WORDS, GENRE_WORDS, NAMES
from .taxonomy import read_category_names

log = logging.getLogger(__name__)

#: The real competition files (Kaggle's data page).
REAL_TRAIN_PRODUCTS = 7_069_896
REAL_TRAIN_PICTURES = 12_371_293
REAL_TEST_PRODUCTS = 1_768_182
REAL_TEST_PICTURES = 3_095_080
MIN_FRACTION, MAX_FRACTION = 0.0001, 1.0
MIN_PX = 16

#: Category law ``1 / (rank + ZIPF_OFFSET) ** ZIPF_EXPONENT`` (see the module docstring for the fit).
ZIPF_EXPONENT = 2.28
ZIPF_OFFSET = 113.0

#: Share of real train pictures that repeat an earlier picture: 1 - 7.8 M distinct / 12.37 M.
TRAIN_DUPLICATE_SHARE = 0.37
#: Share of real test products with a picture that is also in train.
TEST_RELIST_SHARE = 0.42
#: Per picture of a newly drawn product: one of the placeholders shared by every category
#: (an assumption: the real share is not published; 1 % puts each placeholder in thousands of
#: products of unrelated categories at full scale, as the real ones are).
PLACEHOLDER_RATE = 0.01
#: Recent products of each category that a train relist may copy. Recent ones only: copies then
#: form small clusters (1 / (1 - 0.37) = 1.6 pictures per distinct image, as in the real file)
#: instead of piling on the first products of a category of 80 k.
RING = 8
#: Train products (a uniform reservoir sample) that test relists copy; about 15 MB of offsets.
TRAIN_RESERVOIR = 1 << 18
#: Products planned, drawn and written per step: bounds the pictures held in memory at once.
#: Fixed (not derived from ``workers``) because the plan draws its random numbers per block.
BLOCK = 1024

#: The sample's look (params.yaml ``sample`` defaults), so pictures read like the sample's.
FINE_NOISE = 0.16
TEXT_FRACTION = 0.85
JPEG_QUALITY = 85
INSTRUCTIONS_CATEGORY = 1000011427  # CARTOUCHE IMPRIMANTE: sellers repeat a compatibility sheet
INSTRUCTIONS_RATE = 0.5

#: ``bank`` mode: new pictures drawn per category before its later products reuse them.
BANK_SIZE = 8
PICTURE_MODES = ("draw", "bank")

OUTPUTS = ("train.bson", "test.bson", "category_names.csv", "test_solution.csv")
#: Independent random streams (SeedSequence spawn keys), so that one part's draws never shift another's.
_PLAN, _IDS, _PROTO, _RESERVOIR, _PICTURES, _BANK = range(6)
_TRAIN, _TEST = 0, 1


def _picture_mix() -> np.ndarray:
    """Shares of 1..4 pictures: the sample's 2- and 3-picture shares, 1 and 4 set for the real mean."""
    two, three = 0.19, 0.08
    four = (REAL_TRAIN_PICTURES / REAL_TRAIN_PRODUCTS - 1 - two - 2 * three) / 3
    return np.array([1 - two - three - four, two, three, four])


#: Share of products with 1, 2, 3, 4 pictures: [0.5967, 0.19, 0.08, 0.1333], mean 1.7499.
IMAGES_PER_PRODUCT = _picture_mix()


def official_categories() -> pd.DataFrame:
    """The official 5,270-row taxonomy, shipped as package data (names verbatim, keyed by id)."""
    with resources.as_file(_categories_file()) as p:
        return read_category_names(p)


def _categories_file() -> Traversable:
    return resources.files("cdiscount") / "data" / "category_names.csv"


def category_weights(k: int) -> np.ndarray:
    """Share of products of the categories of rank 1..k under the Zipf-Mandelbrot law."""
    w = 1.0 / (np.arange(1, k + 1) + ZIPF_OFFSET) ** ZIPF_EXPONENT
    return w / w.sum()


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def check_args(out_dir: Path, fraction: float, picture_px: int, seed: int, workers: int,
               pictures: str = "draw", bank_size: int = BANK_SIZE) -> None:
    """Reject what cannot work before anything is written (one line each)."""
    if pictures not in PICTURE_MODES:
        raise ConfigError(f"synth --pictures {pictures}: must be one of {', '.join(PICTURE_MODES)}")
    if bank_size < 1:
        raise ConfigError(f"synth --bank-size {bank_size}: must be >= 1 (pictures drawn per category)")
    if not MIN_FRACTION <= fraction <= MAX_FRACTION:
        raise ConfigError(f"synth --fraction {fraction}: must be from {MIN_FRACTION} to {MAX_FRACTION}")
    if not MIN_PX <= picture_px <= draw.SIZE:
        raise ConfigError(f"synth --picture-px {picture_px}: must be from {MIN_PX} to {draw.SIZE} "
                          f"(pictures are drawn at the real {draw.SIZE} px, then scaled down)")
    if seed < 0:
        raise ConfigError(f"synth --seed {seed}: must be an integer >= 0")
    if workers < 0:
        raise ConfigError(f"synth --workers {workers}: must be 0 (all cores) or a number of processes")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"synth --out {out_dir}: exists and is not a folder")
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUTS) if out_dir.is_dir() else []
    if others:  # the folder is replaced as a whole: never delete what synth did not write
        raise ConfigError(f"synth --out {out_dir}: holds other files ({', '.join(others[:3])}); "
                          "synth replaces the folder as a whole, pick a new or empty one")


# --------------------------------------------------------------------------------------------
# Pictures


@dataclass(frozen=True)
class _Spec:
    """What to draw for one product: which of its picture slots are new drawings."""

    split: int
    index: int  # position in its file: with the seed, it names the product's random stream
    category: int  # row in the taxonomy
    slots: tuple[int, ...]


def _title_words(cats: pd.DataFrame) -> dict[int, list[str]]:
    """Title words of each cover category: the sample's genre words where it has them, else the
    words of the category's own names, so a printed title points to its category as on real covers."""
    stop = {"avec", "pour", "dans", "sans", "autre", "autres", "divers"}
    out: dict[int, list[str]] = {}
    for row, (cid, l2, l3) in enumerate(zip(cats["category_id"], cats["category_level2"], cats["category_level3"])):
        if int(cid) in GENRE_WORDS:
            out[row] = GENRE_WORDS[int(cid)]
            continue
        for name in (l3, l2):
            words = [w for w in dict.fromkeys(re.findall(r"[^\W\d_]{4,}", name.lower())) if w not in stop]
            if words:
                out[row] = words
                break
        else:
            out[row] = ["collection"]
    return out


class _Painter:
    """Draws a product's new pictures as the sample's ``_Maker.make`` does, scaled to ``picture_px``."""

    def __init__(self, cats: pd.DataFrame, seed: int, picture_px: int) -> None:
        self.seed, self.px = seed, picture_px
        self.styles = [draw.style_for(l1) for l1 in cats["category_level1"]]
        self.proto = _stream(seed, _PROTO).uniform(0.1, 0.9, size=(len(cats), 4))
        self.words = _title_words(cats)

    def jpeg(self, img: Image.Image) -> bytes:
        """JPEG bytes at the requested size (drawn at 180 px: the scenes are laid out for it)."""
        if self.px != img.width:
            img = img.resize((self.px, self.px), Image.BILINEAR)
        return draw.to_jpeg(img, JPEG_QUALITY)

    def paint(self, spec: _Spec) -> list[bytes]:
        """The pictures of ``spec.slots``, from the product's own random stream."""
        rng = _stream(self.seed, _PICTURES, spec.split, spec.index)
        style = self.styles[spec.category]
        if style.text:  # covers look alike whatever the genre: the style carries no label
            theta = rng.uniform(0, 1, size=4)
        else:
            theta = np.clip(self.proto[spec.category] + rng.normal(0, FINE_NOISE, size=4), 0, 1)
        title = author = None
        if style.text and rng.random() < TEXT_FRACTION:
            pool = self.words[spec.category]
            size = min(len(pool), int(rng.integers(1, 3)))
            title = [str(w) for w in rng.choice(pool, size=size, replace=False)]
            if rng.random() < 0.5:
                title.insert(int(rng.integers(0, len(title) + 1)), str(rng.choice(FILLER_WORDS)))
            author = str(rng.choice(NAMES))
        out = []
        for i in spec.slots:
            back = style.text and i > 0 and rng.random() < 0.5
            out.append(self.jpeg(draw.draw_view(style, theta, rng, title=title, author=author, back=back)))
        return out


_PAINTER: _Painter | None = None  # the forked workers' painter (inherited, never pickled)


def _paint(spec: _Spec) -> list[bytes]:
    return _PAINTER.paint(spec)


@contextlib.contextmanager
def _painting(painter: _Painter, workers: int) -> Iterator[Callable[[list[_Spec]], list[list[bytes]]]]:
    """A function drawing a block of specs, in order: in this process, or over forked workers."""
    global _PAINTER
    if workers <= 1:
        yield lambda specs: [painter.paint(s) for s in specs]
        return
    _PAINTER = painter
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            def run(specs: list[_Spec]) -> list[list[bytes]]:
                try:
                    return list(pool.map(_paint, specs, chunksize=max(1, len(specs) // (4 * workers))))
                except BrokenProcessPool:  # a killed worker: say so, rather than the pool's bare message
                    raise WorkerLost("cdiscount synth: drawing pictures", "lower --workers") from None

            yield run
    finally:
        _PAINTER = None


# --------------------------------------------------------------------------------------------
# Plan: which product has which category and which pictures


class _Ref:
    """One picture in ``train.bson``: its bytes while its block is in memory, then where it lies."""

    __slots__ = ("data", "offset", "length")

    def __init__(self, data: bytes | None = None) -> None:
        self.data, self.offset, self.length = data, -1, 0


@dataclass
class _Listing:
    """A product about to be written: its category row and its pictures (new ones filled by drawing)."""

    category: int
    pictures: list[_Ref]
    spec: _Spec | None = None  # None: a relist, every picture already exists
    new: list[_Ref] = field(default_factory=list)
    bank: list[int] | None = None  # bank mode: bank entries its new pictures are drawn into
    picks: list[int] | None = None  # bank mode: bank entries its new pictures copy (nothing drawn)


def tag_jpeg(data: bytes, tag: bytes) -> bytes:
    """``data`` with a comment segment (COM, FFFE) holding ``tag``: the same pixels, its own bytes and MD5.

    Inserted after the JFIF APP0 segment when the picture starts with one (JFIF wants APP0 right
    after the start-of-image marker), else right after that marker. Decoders skip comments, and
    decode's whole-JPEG check walks over it like any other segment.
    """
    at = 4 + int.from_bytes(data[4:6], "big") if data[2:4] == b"\xff\xe0" else 2
    return b"".join((data[:at], b"\xff\xfe", (len(tag) + 2).to_bytes(2, "big"), tag, data[at:]))


class _Bank:
    """``bank`` mode: the first new pictures of each category, drawn, then reused under unique bytes.

    A category's first products (until :data:`BANK_SIZE` pictures are planned) are drawn as in
    ``draw`` mode; later ones pick entries uniformly from its own random stream. Decided at plan
    time in the main process, in file order, so the bytes do not depend on the workers.
    """

    def __init__(self, k: int, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.entries: list[list[bytes | None]] = [[] for _ in range(k)]  # at most size + 3 each

    def plan(self, listing: _Listing) -> None:
        entries, n = self.entries[listing.category], len(listing.new)
        if not n:
            return
        if len(entries) < self.size:
            listing.bank = list(range(len(entries), len(entries) + n))
            entries.extend([None] * n)
        else:
            listing.picks = self.rng.integers(len(entries), size=n).tolist()

    def fill(self, block: list[_Listing]) -> None:
        """After a block's drawing: bank the drawn pictures, give every new picture its own bytes."""
        for item in block:  # drawn ones first: a later product of the block may pick them
            if item.bank is not None:
                for at, ref in zip(item.bank, item.new):
                    self.entries[item.category][at] = ref.data
        for item in block:
            if item.bank is None and item.picks is None:
                continue
            entries, spec = self.entries[item.category], item.spec
            sources = item.picks if item.picks is not None else item.bank
            for slot, at, ref in zip(spec.slots, sources, item.new):
                ref.data = tag_jpeg(entries[at], b"cdiscount-synth %d %d %d" % (spec.split, spec.index, slot))


def _category_counts(k: int, total: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train products per taxonomy row, and each row's share (for test).

    Where the law gives even the smallest category one product on average (fractions from
    0.083, so at 1.0), each category first gets one, so none is left out by chance; below, a
    floor would be most of the products (5,270 of 7,070 at 0.001) and flatten the long tail.
    Ranks are shuffled so that the head is not one level-1 group.
    """
    w = category_weights(k)[rng.permutation(k)]
    floor = 1 if total * w.min() >= 1 else 0  # only where the law itself gives each one: it must not bend the law
    return floor + rng.multinomial(total - floor * k, w), w


def _category_blocks(counts: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The train products' categories in a uniformly random order, one block at a time: an exact
    shuffle of ``counts`` that never holds more than a block (successive multivariate hypergeometric draws)."""
    left, n = counts.copy(), int(counts.sum())
    while n:
        take = rng.multivariate_hypergeometric(left, min(BLOCK, n), method="marginals")
        left -= take
        n -= int(take.sum())
        yield rng.permutation(np.repeat(np.arange(len(counts)), take))


def _id_blocks(seed: int, n_train: int, n_test: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Kaggle-like ``_id``s: increasing with gaps, train and test interleaved in one id space.
    Yields (ids, is_test) per block; replayed from the seed for each file, so nothing is kept."""
    rng = _stream(seed, _IDS)
    last, train, test = -1, n_train, n_test
    while train + test:
        b = min(BLOCK, train + test)
        k = int(rng.hypergeometric(test, train, b)) if test and train else (b if test else 0)
        mask = np.zeros(b, dtype=bool)
        mask[rng.choice(b, size=k, replace=False)] = True
        ids = last + np.cumsum(rng.integers(1, 4, size=b))
        last, train, test = int(ids[-1]), train - (b - k), test - k
        yield ids, mask


def _split_ids(seed: int, n_train: int, n_test: int, test: bool) -> Iterator[int]:
    for ids, mask in _id_blocks(seed, n_train, n_test):
        yield from ids[mask if test else ~mask].tolist()


def relist_rate_for_train(n: int, nonempty: int) -> float:
    """Chance that a train product re-lists an earlier one of its category, when there is one.

    Relists give ``TRAIN_DUPLICATE_SHARE`` of pictures together with the placeholders. Only the
    ``n - nonempty`` products that follow another of their category can relist; at small fractions
    most categories hold one product, so the chance is raised to keep the share at every scale.
    """
    target = (TRAIN_DUPLICATE_SHARE - PLACEHOLDER_RATE) / (1 - PLACEHOLDER_RATE)
    return min(1.0, target * n / (n - nonempty)) if n > nonempty else 0.0


def relist_rate_for_test() -> float:
    """Chance that a test product re-lists a train product: ``TEST_RELIST_SHARE`` of test products
    then share a picture with train, counting the new products that show a placeholder."""
    with_placeholder = 1 - float(IMAGES_PER_PRODUCT @ (1 - PLACEHOLDER_RATE) ** np.arange(1, 5))
    return (TEST_RELIST_SHARE - with_placeholder) / (1 - with_placeholder)


class _Rings:
    """The :data:`RING` most recent written train products of each category, as byte offsets.

    Preallocated numpy arrays (about 2 MB), not per-category lists, so memory is the same at every
    fraction: lists would grow with the number of categories seen and the products in each.
    """

    def __init__(self, k: int) -> None:
        self.offset = np.zeros((k, RING, 4), np.int64)
        self.length = np.zeros((k, RING, 4), np.int32)
        self.count = np.zeros((k, RING), np.int8)
        self.fill = np.zeros(k, np.int32)
        self.head = np.zeros(k, np.int32)  # the slot the next product goes to (the oldest once full)

    def get(self, category: int, age: int) -> list[_Ref]:
        """The pictures of the ``age``-th most recent product (0: the newest), as offsets."""
        slot = (int(self.head[category]) - 1 - age) % RING
        out = []
        for j in range(self.count[category, slot]):
            ref = _Ref()
            ref.offset, ref.length = int(self.offset[category, slot, j]), int(self.length[category, slot, j])
            out.append(ref)
        return out

    def push(self, listing: _Listing) -> None:
        c, n = listing.category, len(listing.pictures)
        slot = int(self.head[c])
        self.offset[c, slot, :n] = [p.offset for p in listing.pictures]
        self.length[c, slot, :n] = [p.length for p in listing.pictures]
        self.count[c, slot] = n
        self.head[c] = (slot + 1) % RING
        self.fill[c] = min(RING, self.fill[c] + 1)


class _Planner:
    """Decides each product's pictures: a relist of existing ones, or new drawings and placeholders."""

    def __init__(self, rng: np.random.Generator, k: int, shared: list[_Ref], instructions_row: int | None,
                 bank: _Bank | None = None) -> None:
        self.rng, self.shared, self.instructions_row, self.bank = rng, shared, instructions_row, bank
        self.rings = _Rings(k)
        self.block: dict[int, list[_Listing]] = {}  # this block's products per category (not written yet)

    def new(self, split: int, index: int, category: int) -> _Listing:
        """A newly drawn product: 1-4 pictures, a few of them shared placeholders."""
        rng = self.rng
        n = int(rng.choice(4, p=IMAGES_PER_PRODUCT)) + 1
        pictures: list[_Ref] = []
        for _ in range(n):
            pictures.append(self.shared[int(rng.random() < 0.3)] if rng.random() < PLACEHOLDER_RATE else _Ref())
        if category == self.instructions_row and n > 1 and rng.random() < INSTRUCTIONS_RATE:
            pictures[-1] = self.shared[2]  # the compatibility sheet repeated through one category
        new = [p for p in pictures if p not in self.shared]
        slots = tuple(i for i, p in enumerate(pictures) if p not in self.shared)
        listing = _Listing(category, pictures, _Spec(split, index, category, slots), new)
        if self.bank is not None:  # its own random stream: the plan is the same in both modes
            self.bank.plan(listing)
        return listing

    def train(self, index: int, category: int, relist_rate: float) -> _Listing:
        """A train product: a relist of one of the ``RING`` most recent products of its category
        (written ones from the rings, this block's from memory), or a new one."""
        here = self.block.setdefault(category, [])
        recent = min(RING, int(self.rings.fill[category]) + len(here))
        if recent and self.rng.random() < relist_rate:
            age = int(self.rng.integers(recent))
            pictures = here[-1 - age].pictures if age < len(here) else self.rings.get(category, age - len(here))
            listing = _Listing(category, pictures)
        else:
            listing = self.new(_TRAIN, index, category)
        here.append(listing)
        return listing

    def written(self, block: list[_Listing]) -> None:
        """A block is on disk: its products' offsets are known, they join the rings."""
        for listing in block:
            self.rings.push(listing)
        self.block.clear()


class _Reservoir:
    """A uniform sample of train products (Algorithm R) for test relists: offsets, never bytes."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.rng, self.seen = rng, 0
        self.offset = np.zeros((capacity, 4), np.int64)
        self.length = np.zeros((capacity, 4), np.int32)
        self.count = np.zeros(capacity, np.int8)
        self.category = np.zeros(capacity, np.int32)

    def add(self, listing: _Listing) -> None:
        cap = len(self.count)
        slot = self.seen if self.seen < cap else int(self.rng.integers(self.seen + 1))
        self.seen += 1
        if slot < cap:
            n = len(listing.pictures)
            self.offset[slot, :n] = [p.offset for p in listing.pictures]
            self.length[slot, :n] = [p.length for p in listing.pictures]
            self.count[slot], self.category[slot] = n, listing.category

    def pick(self, fd: int) -> tuple[int, list[bytes]]:
        """A random train product's category row and pictures, read back from ``train.bson``."""
        i = int(self.rng.integers(min(self.seen, len(self.count))))
        pics = [os.pread(fd, int(self.length[i, j]), int(self.offset[i, j])) for j in range(self.count[i])]
        return int(self.category[i]), pics


# --------------------------------------------------------------------------------------------
# Writing


def _encode(pid: int, pictures: list[bytes], category_id: int | None) -> bytes:
    doc: dict[str, Any] = {"_id": pid, "imgs": [{"picture": b} for b in pictures]}
    if category_id is not None:
        doc["category_id"] = category_id
    return bson.encode(doc)


def _picture_offsets(doc: bytes, pictures: list[bytes]) -> list[int]:
    """Where each picture's bytes start inside an encoded document (in order, so never mistaken)."""
    out, at = [], 0
    for b in pictures:
        at = doc.index(b, at)
        out.append(at)
        at += len(b)
    return out


def _bytes_of(ref: _Ref, fd: int) -> bytes:
    """A picture's bytes: in memory while its block is, else read back from the file written so far."""
    return ref.data if ref.data is not None else os.pread(fd, ref.length, ref.offset)


def _draw(block: list[_Listing], paint: Callable[[list[_Spec]], list[list[bytes]]],
          bank: _Bank | None = None) -> list[_Listing]:
    """Draw the new pictures of a block's new products (in one batch: the workers share it out),
    or in bank mode take them from the bank; returns the new products."""
    fresh = [item for item in block if item.spec is not None]
    drawn = [item for item in fresh if item.picks is None]
    for item, pics in zip(drawn, paint([item.spec for item in drawn])):
        for ref, data in zip(item.new, pics):
            ref.data = data
    if bank is not None:
        bank.fill(fresh)
    return fresh


@dataclass
class _Counts:
    products: int = 0
    pictures: int = 0
    relisted: int = 0
    drawn: int = 0
    banked: int = 0  # bank mode: new pictures copied from the bank (not drawn)

    def add_new(self, item: _Listing) -> None:
        if item.picks is None:
            self.drawn += len(item.new)
        else:
            self.banked += len(item.new)


def _write_train(f: BinaryIO, ids: Iterator[int], blocks: Iterator[list[_Listing]], cats: pd.DataFrame,
                 paint: Callable[[list[_Spec]], list[list[bytes]]], reservoir: _Reservoir,
                 written: Callable[[list[_Listing]], None], bar: tqdm, bank: _Bank | None = None) -> _Counts:
    """Draw, write and forget one block of train products at a time; ``written`` hears of each
    block once it is on disk (the next block is planned only then)."""
    category_ids = cats["category_id"].to_numpy()
    counts, fd, pos = _Counts(), f.fileno(), 0
    for block in blocks:
        fresh = _draw(block, paint, bank)
        for item in block:
            pictures = [_bytes_of(p, fd) for p in item.pictures]
            doc = _encode(next(ids), pictures, int(category_ids[item.category]))
            for ref, at, data in zip(item.pictures, _picture_offsets(doc, pictures), pictures):
                if ref.offset < 0:  # first time written: remember where
                    ref.offset, ref.length = pos + at, len(data)
            f.write(doc)
            pos += len(doc)
            counts.products += 1
            counts.pictures += len(pictures)
            counts.relisted += item.spec is None
            counts.add_new(item)
        f.flush()  # what the next blocks read back is on disk
        for item in fresh:
            for ref in item.new:
                ref.data = None
        for item in block:
            reservoir.add(item)
        written(block)
        bar.update(len(block))
    return counts


def _train_blocks(planner: _Planner, category_blocks: Iterator[np.ndarray],
                  relist_rate: float) -> Iterator[list[_Listing]]:
    """Plan train products block by block (lazily: the next block only once the last is written)."""
    index = 0
    for rows in category_blocks:
        block = []
        for row in rows.tolist():
            block.append(planner.train(index, row, relist_rate))
            index += 1
        yield block


def _write_test(f: BinaryIO, solution: Any, ids: Iterator[int], n_test: int, weights: np.ndarray,
                cats: pd.DataFrame, planner: _Planner, reservoir: _Reservoir, train_fd: int,
                paint: Callable[[list[_Spec]], list[list[bytes]]], bar: tqdm, bank: _Bank | None = None) -> _Counts:
    """Test products: relists of train products read back from ``train.bson``, or new ones."""
    category_ids = cats["category_id"].to_numpy()
    rate, rng, counts = relist_rate_for_test(), planner.rng, _Counts()
    for start in range(0, n_test, BLOCK):
        rows = rng.choice(len(weights), size=min(BLOCK, n_test - start), p=weights)
        block: list[tuple[int, list[bytes] | _Listing]] = []
        for i, row in enumerate(rows.tolist()):
            if rng.random() < rate:
                block.append(reservoir.pick(train_fd))
            else:
                block.append((row, planner.new(_TEST, start + i, row)))
        _draw([item for _, item in block if isinstance(item, _Listing)], paint, bank)
        for row, item in block:
            pictures = item if isinstance(item, list) else [p.data for p in item.pictures]
            pid = next(ids)
            f.write(_encode(pid, pictures, None))
            solution.writerow([pid, int(category_ids[row])])
            counts.products += 1
            counts.pictures += len(pictures)
            counts.relisted += isinstance(item, list)
            if isinstance(item, _Listing):
                counts.add_new(item)
        bar.update(len(block))
    return counts


def _shared_pictures(painter: _Painter) -> list[_Ref]:
    """Placeholders ('image non disponible', plain white) and the compatibility sheet, drawn once."""
    return [_Ref(painter.jpeg(img)) for img in
            (draw.placeholder_unavailable(), draw.placeholder_white(), draw.instructions_sheet())]


def synthesize(out_dir: str | Path, fraction: float, picture_px: int = 32, seed: int = 0,
               progress: bool = True, *, workers: int = 1, pictures: str = "draw",
               bank_size: int = BANK_SIZE) -> dict[str, Any]:
    """Write a Kaggle-format folder at ``fraction`` of the real counts; returns what it holds.

    ``workers``: processes drawing pictures (0 = all cores); the output does not depend on it.
    ``pictures``: ``draw`` every new picture, or ``bank`` (draw ``bank_size`` per category, then
    reuse them under unique bytes; see the module docstring).
    The folder is replaced as a whole once complete (it must be new, or hold only synth's files).
    """
    out_dir = Path(out_dir)
    check_args(out_dir, fraction, picture_px, seed, workers, pictures, bank_size)
    started = time.perf_counter()
    n_train, n_test = round(fraction * REAL_TRAIN_PRODUCTS), round(fraction * REAL_TEST_PRODUCTS)
    cats = official_categories()
    rng = _stream(seed, _PLAN)
    counts, weights = _category_counts(len(cats), n_train, rng)
    rows = np.flatnonzero(cats["category_id"].to_numpy() == INSTRUCTIONS_CATEGORY)
    painter = _Painter(cats, seed, picture_px)
    bank = _Bank(len(cats), bank_size, _stream(seed, _BANK)) if pictures == "bank" else None
    planner = _Planner(rng, len(cats), _shared_pictures(painter), int(rows[0]) if len(rows) else None, bank)
    reservoir = _Reservoir(min(TRAIN_RESERVOIR, n_train), _stream(seed, _RESERVOIR))
    relist_rate = relist_rate_for_train(n_train, int((counts > 0).sum()))
    with tqdm(total=n_train + n_test, desc="synth products", unit="product", disable=not progress) as bar, \
            atomic_dir(out_dir) as tmp, _painting(painter, workers or os.cpu_count() or 1) as paint:
        with open(tmp / "train.bson", "w+b") as f:  # read back too: relists copy earlier pictures
            train = _write_train(f, _split_ids(seed, n_train, n_test, test=False),
                                 _train_blocks(planner, _category_blocks(counts, rng), relist_rate),
                                 cats, paint, reservoir, planner.written, bar, bank)
        with open(tmp / "train.bson", "rb") as src, open(tmp / "test.bson", "wb") as f, \
                open(tmp / "test_solution.csv", "w", newline="") as sol:
            solution = csv.writer(sol, lineterminator="\n")
            solution.writerow(["_id", "category_id"])
            test = _write_test(f, solution, _split_ids(seed, n_train, n_test, test=True), n_test, weights, cats,
                               planner, reservoir, src.fileno(), paint, bar, bank)
        (tmp / "category_names.csv").write_bytes(_categories_file().read_bytes())  # the official file, verbatim
    summary = {
        "fraction": fraction, "picture_px": picture_px, "seed": seed,
        "train_products": train.products, "train_pictures": train.pictures, "train_relisted": train.relisted,
        "test_products": test.products, "test_pictures": test.pictures, "test_relisted": test.relisted,
        "pictures": pictures, "pictures_drawn": train.drawn + test.drawn,
        "pictures_from_bank": train.banked + test.banked, "categories": len(cats),
        "categories_in_train": int((counts > 0).sum()), "largest_category": int(counts.max()),
        "seconds": round(time.perf_counter() - started, 1),
        "megabytes": {name: round((out_dir / name).stat().st_size / 1e6, 2) for name in OUTPUTS},
    }
    log.info("synth wrote %s: %s", out_dir, summary)
    return summary
