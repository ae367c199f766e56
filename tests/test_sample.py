import hashlib
import io
from collections import defaultdict
from pathlib import Path

import bson
import numpy as np
import pandas as pd
from PIL import Image

from cdiscount.sample import draw, generate_sample
from cdiscount.sample.generator import sample_categories
from cdiscount.sample.probe import probe, thumbnails
from cdiscount.taxonomy import read_category_names
from conftest import TINY


def _docs(path: Path) -> list[dict]:
    return list(bson.decode_file_iter(open(path, "rb")))


def test_deterministic(tiny_sample: Path, tmp_path: Path) -> None:
    generate_sample(tmp_path / "again", TINY, progress=False)
    for name in ("train.bson", "test.bson", "category_names.csv", "test_solution.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_sample / name).read_bytes(), name


def test_exact_kaggle_schema(tiny_sample: Path) -> None:
    cats = read_category_names(tiny_sample / "category_names.csv")
    train, test = _docs(tiny_sample / "train.bson"), _docs(tiny_sample / "test.bson")
    assert len(train) == TINY.train_products and len(test) == TINY.test_products
    assert all(list(d) == ["_id", "imgs", "category_id"] for d in train)
    assert all(list(d) == ["_id", "imgs"] for d in test)
    assert set(d["category_id"] for d in train) <= set(cats["category_id"])
    ids = [d["_id"] for d in train + test]
    assert len(set(ids)) == len(ids)
    assert [d["_id"] for d in train] == sorted(d["_id"] for d in train)
    for d in train[:50] + test[:20]:
        assert 1 <= len(d["imgs"]) <= 4
        for img in d["imgs"]:
            im = Image.open(io.BytesIO(img["picture"]))
            assert (im.format, im.size) == ("JPEG", (180, 180))
    solution = pd.read_csv(tiny_sample / "test_solution.csv")
    assert solution["_id"].tolist() == [d["_id"] for d in test]


def test_real_taxonomy_subset(shared: Path) -> None:
    official = read_category_names(shared / "category_names.csv").set_index("category_id")
    ours = sample_categories().set_index("category_id")
    pd.testing.assert_frame_equal(ours, official.loc[ours.index])  # ids and names verbatim
    groups = ours.groupby("category_level1").size()
    assert len(groups) >= 5 and (groups >= 4).all()
    assert groups["LIBRAIRIE"] >= 6 and groups["MUSIQUE"] >= 5
    assert "ANIMAUX " in set(ours["category_level3"])  # trailing space kept
    assert ours["category_level3"].duplicated().any()  # a repeated level-3 name (VOITURE), two ids


def test_structure_placeholders_instructions_relists_long_tail(tiny_sample: Path) -> None:
    train, test = _docs(tiny_sample / "train.bson"), _docs(tiny_sample / "test.bson")
    cats_of_hash: dict[str, set[int]] = defaultdict(set)
    count_of_hash: dict[str, int] = defaultdict(int)
    for d in train:
        for img in d["imgs"]:
            h = hashlib.md5(img["picture"]).hexdigest()
            cats_of_hash[h].add(d["category_id"])
            count_of_hash[h] += 1
    placeholder = hashlib.md5(draw.to_jpeg(draw.placeholder_unavailable(), TINY.jpeg_quality)).hexdigest()
    assert len(cats_of_hash[placeholder]) >= 3
    instructions = hashlib.md5(draw.to_jpeg(draw.instructions_sheet(), TINY.jpeg_quality)).hexdigest()
    assert cats_of_hash[instructions] == {TINY.instructions_category} and count_of_hash[instructions] >= 2
    train_hashes = set(cats_of_hash)
    relisted = [d for d in test if all(hashlib.md5(i["picture"]).hexdigest() in train_hashes for i in d["imgs"])]
    assert len(relisted) >= 0.1 * len(test)
    sizes = pd.Series([d["category_id"] for d in train]).value_counts()
    assert sizes.iloc[0] >= 5 * sizes.iloc[-1]  # long tail
    assert sizes.iloc[-1] >= TINY.min_products_per_category


def test_covers_of_different_genres_differ_only_in_the_title() -> None:
    style = draw.STYLES["LIBRAIRIE"]
    theta = np.array([0.3, 0.6, 0.2, 0.8])
    a = np.asarray(draw.draw_view(style, theta, np.random.default_rng(1), title=["meurtre", "crime"], author="Roux"))
    b = np.asarray(draw.draw_view(style, theta, np.random.default_rng(1), title=["galaxie", "robot"], author="Roux"))
    differs = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40
    rows = np.flatnonzero(differs.any(axis=1))
    assert 0 < differs.mean() < 0.1  # a few strokes of print...
    assert rows.max() - rows.min() < 90  # ...inside the title band, not the cover around it


def test_pixels_separate_groups_easily_and_genres_barely(tiny_sample: Path) -> None:
    """A linear probe on 16x16 thumbnails: the designed difficulty, in miniature."""
    cats = read_category_names(tiny_sample / "category_names.csv").set_index("category_id")
    docs = _docs(tiny_sample / "train.bson")
    x = thumbnails(docs)
    y3 = np.array([d["category_id"] for d in docs])
    y1 = cats.loc[y3, "category_level1"].to_numpy()
    train = np.arange(len(docs)) < len(docs) * 2 // 3
    acc1, _ = probe(x, y1, train)
    books = y1 == "LIBRAIRIE"
    acc_books, majority = probe(x[books], y3[books], train[books])
    assert acc1 >= 0.85
    assert acc_books <= majority + 0.15  # genre is not in the pixels
