"""OCR engines: real Kaggle covers, the sample's generated covers, rendered words, and clear
failures when absent. A test that needs an engine skips (saying what to install) where it is
absent, through ``engine_or_skip``; it never passes without reading anything."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import bson
import numpy as np
import pytest
from PIL import Image, ImageDraw
from ocr_helpers import ENGINES, engine_or_skip, sample_covers

from cdiscount.ocr import engines as eng
from cdiscount.ocr.engines import (OcrEngineUnavailable, RapidOcrEngine, TesseractEngine, available_engines,
                                   make_engine)
from cdiscount.ocr.preprocess import PreprocessConfig, preprocess
from cdiscount.ocr.text import tokens
from cdiscount.sample.draw import font

#: Words printed in DejaVu Sans Bold on a white 180 px picture: both engines read each exactly.
RENDERED_WORDS = ["CATALOGUE", "MUSIQUE", "Jardin"]


def rendered(word: str, side: int = 180, size: int = 28) -> np.ndarray:
    """A BGR picture with ``word`` in black, centred on white."""
    img = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    width = draw.textlength(word, font=font(size))
    draw.text(((side - width) / 2, (side - size) / 2), word, fill=(0, 0, 0), font=font(size))
    return np.ascontiguousarray(np.asarray(img)[:, :, ::-1])

#: Words legible on the first picture of real products of train_example.bson (looked at by eye),
#: and, per engine, the ones it reads with the default settings. LIBRAIRIE: 15 'PETIT FUTÉ
#: MORBIHAN', 19 'Introduction aux Cultural Studies', 92 'SITUATIONS D'ORAL', 99 'BILLY BAT,
#: NAOKI URASAWA'. MUSIQUE: 9 'French music for bassoon', 12 'FANFARLO RESERVOIR', 18 'Vandaag
#: alleen maar winnaars', 35 'David Munrow, Henry VIII and his Six Wives, TESTAMENT', 70 'DAVID
#: OSBORNE, Red White & Blue' (script). Tesseract reads nothing on 18 (blackletter, tilted
#: newspaper), 70 (script over a flag) and 99 (title over a drawing); rapidocr reads all nine.
READ_WORDS = {
    "tesseract": {15: ["morbihan"], 19: ["introduction", "cultural", "studies"], 92: ["situations"],
                  9: ["french", "music"], 12: ["reservoir"], 35: ["david", "munrow", "henry", "testament"]},
    "rapidocr": {15: ["morbihan"], 19: ["introduction", "cultural", "studies"], 92: ["situations"],
                 99: ["naoki", "urasawa"], 9: ["french", "music"], 12: ["fanfarlo", "reservoir"],
                 18: ["vandaag", "alleen", "winnaars"], 35: ["david", "munrow", "testament"],
                 70: ["david", "osborne"]},
}
REAL_IDS = [15, 19, 92, 99, 9, 12, 18, 35, 70]


@pytest.fixture(scope="module")
def real_covers(shared: Path) -> dict[int, bytes]:
    """First picture of each product above, from the official sample."""
    with open(shared / "train_example.bson", "rb") as f:
        return {d["_id"]: d["imgs"][0]["picture"] for d in bson.decode_file_iter(f) if d["_id"] in REAL_IDS}


@pytest.mark.parametrize("name", ENGINES)
def test_reads_legible_words_on_real_covers(name: str, real_covers: dict[int, bytes]) -> None:
    engine = engine_or_skip(name)
    cfg = PreprocessConfig.for_engine(name)
    missed, t0 = {}, time.perf_counter()
    texts = {pid: engine.read(preprocess(real_covers[pid], cfg)) for pid in REAL_IDS}
    per_image = (time.perf_counter() - t0) / len(REAL_IDS)
    for pid, words in READ_WORDS[name].items():
        found = set(tokens(texts[pid]))
        if not set(words) <= found:
            missed[pid] = (sorted(set(words) - found), texts[pid])
    assert not missed, f"{name} missed legible words (product: (missing, text read)): {missed}"
    print(f"\n{name}: {per_image:.2f} s per real cover, "
          f"{sum(bool(t.strip()) for t in texts.values())}/{len(texts)} non-empty")


@pytest.mark.parametrize("name", ENGINES)
def test_reads_genre_words_on_sample_covers(name: str) -> None:
    """The sample's covers are the OCR classifier's only signal on the sample: the genre words
    printed on them (accents included: 'enquête', 'opéra', 'ténèbres') must come back."""
    engine = engine_or_skip(name)
    cfg = PreprocessConfig.for_engine(name)
    covers = sample_covers(14, seed=3)
    hits = total = 0
    t0 = time.perf_counter()
    misses = []
    for jpeg, words, _ in covers:
        found = set(tokens(engine.read(preprocess(jpeg, cfg))))
        want = {t for w in words for t in tokens(w)}
        hits += len(want & found)
        total += len(want)
        if not want & found:
            misses.append(words)
    per_image = (time.perf_counter() - t0) / len(covers)
    recall = hits / total
    print(f"\n{name}: genre-word recall {recall:.2f} on {len(covers)} sample covers, {per_image:.2f} s per cover")
    assert recall >= 0.75, f"{name} read only {recall:.0%} of the title words; covers with none read: {misses}"
    assert len(misses) <= 2, misses


def test_missing_tesseract_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytesseract = pytest.importorskip("pytesseract")
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(OcrEngineUnavailable, match="apt-get install -y tesseract-ocr tesseract-ocr-fra"):
        make_engine("tesseract")
    assert "tesseract" not in available_engines()


def test_missing_tesseract_language_says_what_to_install() -> None:
    engine_or_skip("tesseract")
    with pytest.raises(OcrEngineUnavailable, match="tesseract-ocr-xyz"):
        make_engine("tesseract", lang="xyz")


def test_missing_rapidocr_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # import fails as if not installed
    with pytest.raises(OcrEngineUnavailable, match=r"pip install 'rapidocr==.*' 'onnxruntime==.*'"):
        make_engine("rapidocr")
    assert "rapidocr" not in available_engines()


def test_missing_rapidocr_models_never_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("rapidocr")
    monkeypatch.setattr(RapidOcrEngine, "_package_dir", staticmethod(lambda: tmp_path))
    with pytest.raises(OcrEngineUnavailable, match="bundled models are missing"):
        make_engine("rapidocr")


def test_rapidocr_loads_and_reads_without_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    engine_or_skip("rapidocr")
    from rapidocr.utils import download_file

    def no_download(*args, **kwargs):
        raise AssertionError("rapidocr tried to download a file")

    monkeypatch.setattr(download_file.DownloadFile, "run", classmethod(no_download))
    engine = RapidOcrEngine()  # fresh: builds its onnxruntime sessions now
    jpeg, words, _ = sample_covers(1, seed=5)[0]
    assert set(tokens(words[0])) & set(tokens(engine.read(preprocess(jpeg, PreprocessConfig.for_engine("rapidocr")))))
    assert engine.read(rendered("CATALOGUE")) == "CATALOGUE"


def test_unknown_engine_and_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown OCR engine"):
        make_engine("abbyy")
    with pytest.raises(ValueError, match="psm"):
        TesseractEngine(psm=42)


def test_engines_are_picklable_descriptions() -> None:
    import pickle

    engine = RapidOcrEngine(text_score=0.6)
    engine._ocr = object()  # a loaded session must not travel to workers
    back = pickle.loads(pickle.dumps(engine))
    assert back._ocr is None and back.text_score == 0.6
    assert pickle.loads(pickle.dumps(TesseractEngine(psm=11))).psm == 11


@pytest.mark.parametrize("name", ENGINES)
def test_reads_a_rendered_word_and_nothing_on_a_blank_picture(name: str) -> None:
    engine = engine_or_skip(name)
    assert name in available_engines() and set(available_engines()) <= set(eng.ENGINES)
    cfg = PreprocessConfig.for_engine(name)
    for word in RENDERED_WORDS:
        assert engine.read(preprocess(rendered(word), cfg)) == word
    assert engine.read(preprocess(np.full((180, 180, 3), 255, np.uint8), cfg)) == ""


@pytest.mark.parametrize("name", ENGINES)
def test_reading_in_process_leaves_the_thread_settings_of_the_caller_alone(name: str) -> None:
    """A thread limit set here would leak into every later subprocess (e.g. a training on one core)."""
    import os

    engine = engine_or_skip(name)
    before = {k: os.environ.get(k) for k in ("OMP_THREAD_LIMIT", "OMP_NUM_THREADS")}
    assert engine.read(rendered("MUSIQUE")) == "MUSIQUE"  # a real read, not a no-op
    assert {k: os.environ.get(k) for k in before} == before
