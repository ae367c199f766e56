"""Preprocessing: a pure function of the picture and a frozen config."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cdiscount.ocr.preprocess import PreprocessConfig, decode_jpeg, preprocess


def picture(dark: bool = False) -> np.ndarray:
    img = np.full((180, 180, 3), 30 if dark else 235, np.uint8)
    cv2.putText(img, "ROMAN", (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (240, 240, 240) if dark else (20, 20, 20), 3)
    return img


def test_shapes_and_channels() -> None:
    img = picture()
    out = preprocess(img, PreprocessConfig())
    assert out.dtype == np.uint8 and out.shape == (360 + 20, 360 + 20)  # upscale 2, 10 px border
    colour = preprocess(img, PreprocessConfig.for_engine("rapidocr"))
    assert colour.shape == (180, 180, 3) and np.array_equal(colour, img)  # untouched for the learned engine
    assert preprocess(img, PreprocessConfig(upscale=1.0, border=0)).shape == (180, 180)


def test_bytes_and_arrays_give_the_same_result_and_the_function_is_pure() -> None:
    ok, buf = cv2.imencode(".jpg", picture())
    cfg = PreprocessConfig(clahe=True)
    a = preprocess(buf.tobytes(), cfg)
    b = preprocess(decode_jpeg(buf.tobytes()), cfg)
    assert np.array_equal(a, b) and np.array_equal(a, preprocess(buf.tobytes(), cfg))


def test_dark_covers_are_inverted_to_dark_text_on_light() -> None:
    cfg = PreprocessConfig(upscale=1.0, border=0)
    light, dark = preprocess(picture(), cfg), preprocess(picture(dark=True), cfg)
    assert np.median(light) > 200 and np.median(dark) > 200  # background light in both
    assert np.median(preprocess(picture(dark=True), PreprocessConfig(upscale=1.0, border=0, auto_invert=False))) < 50


def test_threshold_gives_black_and_white() -> None:
    out = preprocess(picture(), PreprocessConfig(threshold=True))
    assert set(np.unique(out)) <= {0, 255}


def test_params_are_checked() -> None:
    assert PreprocessConfig.from_params({"upscale": 3.0, "threshold": True}).upscale == 3.0
    with pytest.raises(ValueError, match=r"ocr.preprocess: unknown keys \[.upsacle.\]"):
        PreprocessConfig.from_params({"upsacle": 3.0})
    with pytest.raises(ValueError, match="odd"):
        PreprocessConfig(threshold_block=30)
    with pytest.raises(ValueError, match="upscale"):
        PreprocessConfig(upscale=0)
