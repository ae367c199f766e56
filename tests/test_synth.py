"""``cdiscount synth``: a Kaggle-format Cdiscount at a fraction of the real scale.

One real run at F = 0.0002 (1,414 train / 354 test products, pictures drawn by the sample's code)
is decoded by the project's own decoder and checked for counts, taxonomy and structure. The
statistics at that size are noisy, so each tolerance below is 3 standard deviations measured
over 30 seeds at that size (20 at F = 0.002); sharper checks of the same shares, the determinism of whole files
and the memory profile use runs whose picture drawing (about 5 ms a picture, nothing else in
the generator is slow) is replaced by 1 KB of seeded noise: everything else is the real code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import bson
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cdiscount import synth
from cdiscount.cli import main
from cdiscount.decode import DecodeConfig, run_decode
from cdiscount.sample import draw
from cdiscount.sample.generator import sample_categories
from cdiscount.taxonomy import read_category_names
from conftest import REPO, config

F = 0.0002
N_TRAIN, N_TEST = round(F * 7_069_896), round(F * 1_768_182)  # 1,414 and 354
OUTPUTS = ["train.bson", "test.bson", "category_names.csv", "test_solution.csv"]


def _fake_paint(self: synth._Painter, spec: synth._Spec) -> list[bytes]:
    """Seeded noise instead of a drawing, from the product's own stream (as the real painter)."""
    rng = synth._stream(self.seed, synth._PICTURES, spec.split, spec.index)
    return [b"\xff\xd8" + rng.bytes(900) + b"\xff\xd9" for _ in spec.slots]


@pytest.fixture()
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth._Painter, "paint", _fake_paint)  # forked workers inherit it


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real generator at F = 0.0002, seed 0 (read-only for tests)."""
    out = tmp_path_factory.mktemp("synth") / "raw"
    synth.synthesize(out, F, 32, 0, progress=False, workers=2)
    return out


@pytest.fixture(scope="module")
def decoded(real: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The decode stage's metrics and tables for the real run."""
    root = tmp_path_factory.mktemp("synth_decoded")
    metrics = run_decode(real, root / "interim", root / "metrics", config(DecodeConfig, workers=0), progress=False)
    return metrics, root / "interim"


def _docs(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        return list(bson.decode_file_iter(f))


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _shares(train: pd.DataFrame, test: pd.DataFrame, products: int) -> dict[str, float]:
    """Pictures per product, duplicate share of train pictures (a picture whose bytes came earlier),
    the share of those duplicates whose first occurrence is in another category, and the share of
    test products with a picture that is also in train. Tables: one row per picture, in file order."""
    dup = train["md5"].duplicated()
    first_cat = train.drop_duplicates("md5").set_index("md5")["category_id"]
    cross = (train.loc[dup, "category_id"].to_numpy() != first_cat.loc[train.loc[dup, "md5"]].to_numpy()).mean()
    relisted = test.assign(hit=test["md5"].isin(set(train["md5"]))).groupby("_id")["hit"].any()
    return {"mean": (len(train) + len(test)) / products, "dup": dup.mean(), "cross": cross, "relist": relisted.mean()}


def _tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Per-picture tables read straight from the BSON files (for the runs that are not decoded)."""
    rows = {"train": [], "test": []}
    products = 0
    for split in rows:
        for doc in _docs(folder / f"{split}.bson"):
            products += 1
            rows[split] += [(doc["_id"], doc.get("category_id", -1), _md5(i["picture"])) for i in doc["imgs"]]
    train, test = (pd.DataFrame(rows[s], columns=["_id", "category_id", "md5"]) for s in ("train", "test"))
    return train, test, products


# --------------------------------------------------------------------------------------------
# The real run, through the project's decoder


def test_decodes_with_the_exact_counts_and_the_official_taxonomy(real: Path, decoded: tuple[dict, Path]) -> None:
    metrics, interim = decoded
    assert (metrics["train_products"], metrics["test_products"]) == (N_TRAIN, N_TEST) == (1414, 354)
    assert metrics["train_skipped_records"] == metrics["test_skipped_records"] == 0
    assert metrics["categories"] == 5270 and len(pd.read_parquet(interim / "taxonomy.parquet")) == 5270
    names = read_category_names(real / "category_names.csv")
    assert len(names) == 5270 and names["category_id"].is_unique
    assert (real / "category_names.csv").read_bytes() == synth._categories_file().read_bytes()  # verbatim
    solution = pd.read_csv(real / "test_solution.csv")
    assert solution["_id"].tolist() == pd.read_parquet(interim / "test_products.parquet")["_id"].tolist()
    assert set(solution["category_id"]) <= set(names["category_id"])


def test_documents_are_in_the_kaggle_layout(real: Path) -> None:
    train, test = _docs(real / "train.bson"), _docs(real / "test.bson")
    assert all(list(d) == ["_id", "imgs", "category_id"] for d in train)
    assert all(list(d) == ["_id", "imgs"] for d in test)
    train_ids, test_ids = [d["_id"] for d in train], [d["_id"] for d in test]
    assert train_ids == sorted(train_ids) and test_ids == sorted(test_ids)
    assert not set(train_ids) & set(test_ids)
    assert test_ids[0] < train_ids[-1] and train_ids[0] < test_ids[-1]  # one id space, interleaved
    for d in train[:30] + test[:10]:
        assert 1 <= len(d["imgs"]) <= 4
        for img in d["imgs"]:
            im = Image.open(io.BytesIO(img["picture"]))
            assert (im.format, im.size) == ("JPEG", (32, 32))


def test_packaged_taxonomy_is_the_official_file(shared: Path) -> None:
    assert synth._categories_file().read_bytes() == (shared / "category_names.csv").read_bytes()


def test_packaged_taxonomy_keeps_names_verbatim_and_holds_the_sample() -> None:
    official = synth.official_categories().set_index("category_id")
    assert len(official) == 5270 and official.index.is_unique
    assert "ANIMAUX " in set(official["category_level3"])  # trailing space kept
    sample = sample_categories().set_index("category_id")
    pd.testing.assert_frame_equal(sample, official.loc[sample.index])


def test_pictures_per_product(decoded: tuple[dict, Path]) -> None:
    mix = synth.IMAGES_PER_PRODUCT
    assert mix.sum() == pytest.approx(1) and (mix > 0).all()
    assert mix @ np.arange(1, 5) == pytest.approx(12_371_293 / 7_069_896, abs=1e-9)  # 1.74985
    metrics, _ = decoded
    mean = (metrics["train_images"] + metrics["test_images"]) / (N_TRAIN + N_TEST)
    assert abs(mean - 1.75) < 0.13  # 3 sd = 3 x 0.044 at this size; 1.68 at F = 0.002 below
    assert set(metrics["train_images_per_product"]) == {"1", "2", "3", "4"}


def test_duplicates_relists_and_placeholders(decoded: tuple[dict, Path]) -> None:
    _, interim = decoded
    train = pd.read_parquet(interim / "train_images.parquet").sort_values(["_id", "img_idx"])
    test = pd.read_parquet(interim / "test_images.parquet")
    s = _shares(train, test, N_TRAIN + N_TEST)
    assert abs(s["dup"] - 0.37) < 0.06  # 3 sd = 3 x 0.019
    assert abs(s["relist"] - 0.42) < 0.08  # 3 sd = 3 x 0.025
    assert s["cross"] < 0.1  # mostly within a category: only placeholders cross (measured ~0.02)
    painter = synth._Painter(synth.official_categories(), 0, 32)
    placeholder = _md5(painter.jpeg(draw.placeholder_unavailable()))
    assert train.loc[train["md5"] == placeholder, "category_id"].nunique() >= 3


def test_long_tail_over_the_official_categories(real: Path, decoded: tuple[dict, Path]) -> None:
    metrics, interim = decoded
    sizes = pd.read_parquet(interim / "train_products.parquet")["category_id"].value_counts()
    # 1,414 products spread evenly over 5,270 categories would touch ~1,230 of them, 4 at most each
    assert metrics["categories_present"] < 700 and sizes.iloc[0] >= 10
    counts, _ = synth._category_counts(5270, 7_069_896, np.random.default_rng(0))  # F = 1: cheap, no pictures
    assert counts.min() >= 1 and counts.sum() == 7_069_896
    assert 70_000 < counts.max() < 90_000  # the real largest category: ~79.6 k
    assert (counts < 100).sum() > 1000  # and a long tail of small ones
    counts, _ = synth._category_counts(5270, 7070, np.random.default_rng(0))  # F = 0.001
    assert (counts > 0).sum() < 2000  # ~1,060: no floor of one per category bending the law


def test_pictures_are_the_products_own_seeded_drawings(real: Path) -> None:
    """Re-drawing products of the real file, out of order and with a fresh painter, gives their
    bytes: a product's pictures depend on the seed and its position only. Another seed differs."""
    cats = synth.official_categories()
    row = {int(c): i for i, c in enumerate(cats["category_id"])}
    painter = synth._Painter(cats, 0, 32)
    shared = {_md5(r.data) for r in synth._shared_pictures(painter)}
    seen: set[str] = set()
    picked = []
    for index, doc in enumerate(_docs(real / "train.bson")):
        hashes = [_md5(i["picture"]) for i in doc["imgs"]]
        slots = tuple(j for j, h in enumerate(hashes) if h not in shared)
        if len(picked) < 3 and slots and not seen & set(hashes):
            picked.append((synth._Spec(synth._TRAIN, index, row[doc["category_id"]], slots),
                           [doc["imgs"][j]["picture"] for j in slots]))
        seen.update(hashes)
    assert len(picked) == 3
    for spec, pictures in reversed(picked):
        assert synth._Painter(cats, 0, 32).paint(spec) == pictures
        assert synth._Painter(cats, 1, 32).paint(spec) != pictures


# --------------------------------------------------------------------------------------------
# Fast runs (drawing replaced by seeded noise)


def test_shares_at_a_larger_scale(fast: None, tmp_path: Path) -> None:
    synth.synthesize(tmp_path / "raw", 0.002, 32, 0, progress=False)
    s = _shares(*_tables(tmp_path / "raw"))
    assert abs(s["mean"] - 1.75) < 0.05  # 3 sd = 3 x 0.0153 at F = 0.002 (the sample's 1.68 fails)
    assert abs(s["dup"] - 0.37) < 0.015  # 3 sd = 3 x 0.0050
    assert abs(s["relist"] - 0.42) < 0.025  # 3 sd = 3 x 0.0077
    assert s["cross"] < 0.1


def test_same_seed_same_bytes_whatever_the_workers_other_seed_differs(fast: None, tmp_path: Path) -> None:
    runs = {"a": (0, 1), "again": (0, 1), "workers": (0, 2), "other": (1, 1)}
    for name, (seed, workers) in runs.items():
        synth.synthesize(tmp_path / name, F, 32, seed, progress=False, workers=workers)
    for name in OUTPUTS:
        a = (tmp_path / "a" / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == a, name
        assert (tmp_path / "workers" / name).read_bytes() == a, name
    for name in ("train.bson", "test.bson", "test_solution.csv"):
        assert (tmp_path / "other" / name).read_bytes() != (tmp_path / "a" / name).read_bytes(), name


MEMORY_SCRIPT = """
import json, tracemalloc
from cdiscount import synth

def fake_paint(self, spec):  # as _fake_paint
    rng = synth._stream(self.seed, synth._PICTURES, spec.split, spec.index)
    return [b"\\xff\\xd8" + rng.bytes(900) + b"\\xff\\xd9" for _ in spec.slots]

synth._Painter.paint = fake_paint
synth.synthesize({out!r} + "/warm", 0.0001, 32, 0, progress=False)  # imports, fonts, caches
peaks = {{}}
for f in (0.0002, 0.001):
    tracemalloc.start()
    synth.synthesize({out!r} + "/" + str(f), f, 32, 0, progress=False)
    peaks[f] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(json.dumps(peaks))
"""


def test_peak_memory_does_not_grow_with_the_fraction(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    script = MEMORY_SCRIPT.format(out=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    peaks = {float(k): v for k, v in json.loads(out.stdout.splitlines()[-1]).items()}
    grown = sum((tmp_path / "0.001" / n).stat().st_size - (tmp_path / "0.0002" / n).stat().st_size
                for n in ("train.bson", "test.bson"))
    assert grown > 10e6  # 5x the products: holding them (as the sample generator does) would cost this much
    assert peaks[0.001] - peaks[0.0002] < 3e6, peaks  # one block of pictures, at most (measured: ~1 MB)


# --------------------------------------------------------------------------------------------
# The command


def test_cli_writes_the_folder_with_a_progress_bar(fast: None, tmp_path: Path, capsys) -> None:
    assert main(["synth", "--fraction", "0.0001", "--out", str(tmp_path / "raw"), "--seed", "3", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "707 train products" in out and "177 test products" in out
    assert "synth products" in err  # tqdm's bar
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(OUTPUTS)
    # a second run replaces the folder it made
    assert main(["synth", "--fraction", "0.0001", "--out", str(tmp_path / "raw"), "--workers", "1"]) == 0


@pytest.mark.parametrize("args, says", [
    (["--fraction", "2"], "--fraction 2.0: must be from 0.0001 to 1.0"),
    (["--fraction", "0.00001"], "--fraction 1e-05"),
    (["--fraction", "0.001", "--picture-px", "8"], "--picture-px 8: must be from 16 to 180"),
    (["--fraction", "0.001", "--seed", "-1"], "--seed -1"),
    (["--fraction", "0.001", "--workers", "-2"], "--workers -2"),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path: Path, caplog, args: list[str], says: str) -> None:
    assert main(["synth", "--out", str(tmp_path / "raw"), *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and says in errors[0], errors
    assert not (tmp_path / "raw").exists()


def test_a_folder_with_other_files_is_never_replaced(tmp_path: Path, caplog) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("keep me")
    assert main(["synth", "--fraction", "0.001", "--out", str(tmp_path / "raw")]) == 2
    assert "holds other files (notes.txt)" in caplog.text
    assert (tmp_path / "raw" / "notes.txt").read_text() == "keep me"


def test_a_failed_run_leaves_nothing_behind(fast: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_on_second_block(self, spec):
        calls.append(spec.index)
        if len(calls) > 700:  # in the second block: the first one is on disk
            raise RuntimeError("boom")
        return _fake_paint(self, spec)

    monkeypatch.setattr(synth._Painter, "paint", fail_on_second_block)
    with pytest.raises(RuntimeError, match="boom"):
        synth.synthesize(tmp_path / "raw", F, 32, 0, progress=False)
    assert list(tmp_path.iterdir()) == []  # no folder, no half-written file, no temp


# --------------------------------------------------------------------------------------------
# Bank mode: a bounded bank of drawings per category, reused under unique bytes


def _first_seen(folder: Path) -> dict[str, list[int]]:
    """Per file, each picture's index of first occurrence of its bytes (train, then test, in file order):
    the duplicate structure alone, whatever the bytes."""
    first: dict[str, int] = {}
    out: dict[str, list[int]] = {}
    for split in ("train", "test"):
        out[split] = [first.setdefault(_md5(i["picture"]), len(first)) for d in _docs(folder / f"{split}.bson")
                      for i in d["imgs"]]
    return out


def test_tag_keeps_the_pixels_and_passes_the_whole_jpeg_check() -> None:
    from cdiscount.bson_io import jpeg_problem

    painter = synth._Painter(synth.official_categories(), 0, 32)
    raw = painter.jpeg(draw.placeholder_unavailable())
    tagged = synth.tag_jpeg(raw, b"cdiscount-synth 0 12 3")
    assert tagged != raw and _md5(tagged) != _md5(raw) and len(tagged) == len(raw) + 4 + 22
    assert jpeg_problem(tagged) is None and tagged[2:4] == raw[2:4]  # the JFIF APP0 segment stays first
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(tagged))), np.asarray(Image.open(io.BytesIO(raw))))
    assert synth.tag_jpeg(b"\xff\xd8\xff\xdb" + b"x" * 10, b"t")[:7] == b"\xff\xd8\xff\xfe\x00\x03t"  # no APP0


def test_bank_mode_has_exactly_the_duplicates_of_draw_mode(fast: None, tmp_path: Path) -> None:
    """Same seed: the plan is the same in both modes, so the same pictures repeat, and only those."""
    draw_s = synth.synthesize(tmp_path / "draw", 0.002, 32, 0, progress=False)
    bank_s = synth.synthesize(tmp_path / "bank", 0.002, 32, 0, progress=False, pictures="bank", bank_size=2)
    assert bank_s["pictures_from_bank"] > 0.3 * bank_s["pictures_drawn"]  # the bank is really used
    assert bank_s["pictures_drawn"] + bank_s["pictures_from_bank"] == draw_s["pictures_drawn"]
    assert _first_seen(tmp_path / "bank") == _first_seen(tmp_path / "draw")
    assert (tmp_path / "bank" / "test_solution.csv").read_bytes() == (tmp_path / "draw" / "test_solution.csv").read_bytes()
    s = _shares(*_tables(tmp_path / "bank"))
    assert abs(s["dup"] - 0.37) < 0.015 and abs(s["relist"] - 0.42) < 0.025  # as test_shares_at_a_larger_scale


def test_bank_mode_pictures_decode_are_deterministic_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real drawings, bank of 1 picture per category: every picture passes decode (on_error: raise) and
    PIL; a banked picture has its bank entry's pixels; workers do not change a byte; the bank never
    holds more than size + 3 pictures a category (a product's 1-4 pictures are banked together)."""
    banks: list[synth._Bank] = []

    class Recorded(synth._Bank):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            banks.append(self)

    monkeypatch.setattr(synth, "_Bank", Recorded)
    runs = {"a": (0, 1), "workers": (0, 2), "other": (1, 1)}
    summaries = {name: synth.synthesize(tmp_path / name, 0.0002, 32, seed, progress=False, workers=workers,
                                        pictures="bank", bank_size=1) for name, (seed, workers) in runs.items()}
    assert summaries["a"]["pictures_from_bank"] > 100
    for name in OUTPUTS:
        assert (tmp_path / "workers" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert (tmp_path / "other" / "train.bson").read_bytes() != (tmp_path / "a" / "train.bson").read_bytes()
    assert max(len(e) for b in banks for e in b.entries) <= 1 + 3
    metrics = run_decode(tmp_path / "a", tmp_path / "interim", tmp_path / "metrics", config(DecodeConfig, workers=0),
                         progress=False)
    assert metrics["train_skipped_records"] == metrics["test_skipped_records"] == 0
    pixels: dict[bytes, list[str]] = {}
    for doc in _docs(tmp_path / "a" / "train.bson"):
        for img in doc["imgs"]:
            im = Image.open(io.BytesIO(img["picture"]))
            assert (im.format, im.size) == ("JPEG", (32, 32))
            pixels.setdefault(np.asarray(im).tobytes(), []).append(_md5(img["picture"]))
    reused = [hashes for hashes in pixels.values() if len(set(hashes)) > 1]
    assert len(reused) > 50  # same pixels under distinct bytes: the bank's copies
