"""Helpers shared by the OCR tests: engines that skip when absent, generated covers, fake engines."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from cdiscount.ocr.engines import OcrEngine, OcrEngineUnavailable, OcrTimeout, make_engine
from cdiscount.sample import draw
from cdiscount.sample.generator import sample_categories
from cdiscount.sample.vocabulary import GENRE_WORDS, NAMES

ENGINES = ["tesseract", "rapidocr"]


def engine_or_skip(name: str) -> OcrEngine:
    """The engine, warmed up; the test is skipped (with the install command) when it is absent."""
    try:
        engine = make_engine(name)
    except OcrEngineUnavailable as e:
        pytest.skip(f"OCR engine {name!r} not installed: {e}")
    engine.warm_up()
    return engine


def sample_covers(n: int, seed: int = 0, quality: int = 85) -> list[tuple[bytes, list[str], int]]:
    """``n`` covers drawn exactly as the embedded sample draws them (same scene, jitter, font and
    JPEG quality), cycling over the 14 book and CD genres: (jpeg, title words, category_id)."""
    level1 = dict(zip(sample_categories()["category_id"], sample_categories()["category_level1"]))
    rng = np.random.default_rng(seed)
    genres = list(GENRE_WORDS)
    out = []
    for k in range(n):
        cid = genres[k % len(genres)]
        words = [str(w) for w in rng.choice(GENRE_WORDS[cid], size=int(rng.integers(1, 3)), replace=False)]
        img = draw.draw_view(draw.style_for(level1[cid]), rng.uniform(0, 1, size=4), rng,
                             title=words, author=str(rng.choice(NAMES)))
        out.append((draw.to_jpeg(img, quality), words, cid))
    return out


class CountingEngine(OcrEngine):
    """Fake engine: 'text <mean grey level>' and a count of calls (in this process)."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def check(self) -> None:
        pass

    def warm_up(self) -> None:
        pass

    def read(self, image: np.ndarray) -> str:
        self.calls += 1
        return f"text {int(image.mean())}"

    def settings(self) -> dict:
        return {"engine": self.name}


class MarkedEngine(CountingEngine):
    """Fake engine that misbehaves on pictures whose mean grey level is below 20 (a black picture):
    ``mode`` 'sleep' hangs, 'soft' raises the engine's own timeout, 'crash' kills its process,
    'unavailable' says the engine is gone."""

    name = "marked"

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def read(self, image: np.ndarray) -> str:
        if image.mean() < 20:
            if self.mode == "sleep":
                time.sleep(120)
            elif self.mode == "soft":
                raise OcrTimeout("took too long")
            elif self.mode == "crash":
                os._exit(3)
            elif self.mode == "unavailable":
                raise OcrEngineUnavailable("engine vanished")
        return super().read(image)

    def settings(self) -> dict:
        return {"engine": self.name, "mode": self.mode}
