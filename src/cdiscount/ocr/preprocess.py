"""OpenCV preprocessing of a cover before OCR, as a frozen config (one DVC param each).

Cdiscount pictures are 180x180: cover titles are often 8-15 px tall, below the ~20-30 px
x-height Tesseract is tuned for, so upscaling matters most. Local contrast (CLAHE) helps
titles printed over photos; an adaptive threshold helps Tesseract on flat covers but destroys
thin serif print, hence a switch. Tesseract wants dark text on light paper, so mostly-dark
covers are inverted. Learned engines (rapidocr) prefer the colour picture untouched: every
step can be turned off.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..errors import ConfigError

cv2.setNumThreads(1)  # parallelism comes from OCR worker processes, not from inside one image


@dataclass(frozen=True)
class PreprocessConfig:
    """How a picture is prepared for the OCR engine (all steps are cheap: well under 1 ms)."""

    grayscale: bool = True
    #: Resize factor (cubic); 1.0 keeps the picture as it is.
    upscale: float = 2.0
    #: Contrast-limited adaptive histogram equalisation (grayscale only). Off by default: on the
    #: sample's striped covers it lifts the stripes into letter-like noise (word recall 0.78 -> 0.71).
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tile: int = 8
    #: Adaptive Gaussian threshold to black and white (grayscale only). Off by default: it breaks
    #: thin serif print on real covers.
    threshold: bool = False
    threshold_block: int = 31
    threshold_c: int = 10
    #: Invert mostly-dark pictures so text tends to be dark on light (grayscale only).
    auto_invert: bool = True
    #: Plain border (px, after upscaling) of the background colour: Tesseract misses text touching the edge.
    border: int = 10

    def __post_init__(self) -> None:
        if not 0.25 <= self.upscale <= 8:
            raise ConfigError(f"ocr.preprocess.upscale = {self.upscale!r}: must be within [0.25, 8]")
        if self.threshold_block < 3 or self.threshold_block % 2 == 0:
            raise ConfigError(f"ocr.preprocess.threshold_block = {self.threshold_block!r}: must be an odd number >= 3")
        if self.clahe_tile < 1 or self.border < 0:
            raise ConfigError(f"ocr.preprocess: clahe_tile ({self.clahe_tile}) must be >= 1 and border "
                              f"({self.border}) >= 0")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> PreprocessConfig:
        """From a params.yaml section; unknown keys are an error (a typo must not be ignored)."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"ocr.preprocess: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_engine(cls, engine: str) -> PreprocessConfig:
        """Defaults that measured best here for each engine (see the OCR tests)."""
        if engine == "rapidocr":  # a learned detector/recogniser: colour, native size
            return cls(grayscale=False, upscale=1.0, clahe=False, auto_invert=False, border=0)
        return cls()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG (or any picture) bytes -> BGR uint8 array; Pillow as a fallback for what OpenCV can't read."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return arr


def preprocess(image: bytes | np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Picture bytes or array (BGR or gray) -> the array handed to the OCR engine.

    Pure: same input, same output. Returns uint8, 2-d when ``cfg.grayscale`` else BGR.
    """
    img = decode_jpeg(image) if isinstance(image, (bytes, bytearray, memoryview)) else np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 picture, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if cfg.grayscale and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if cfg.upscale != 1.0:
        interp = cv2.INTER_CUBIC if cfg.upscale > 1 else cv2.INTER_AREA
        img = cv2.resize(img, None, fx=cfg.upscale, fy=cfg.upscale, interpolation=interp)
    if img.ndim == 2:
        if cfg.clahe:
            img = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(cfg.clahe_tile, cfg.clahe_tile)).apply(img)
        if cfg.auto_invert and np.median(img) < 110:
            img = 255 - img
        if cfg.threshold:
            img = cv2.adaptiveThreshold(img, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                        cfg.threshold_block, cfg.threshold_c)
    if cfg.border:
        value: Any = int(np.median(img)) if img.ndim == 2 else [int(v) for v in np.median(img, axis=(0, 1))]
        img = cv2.copyMakeBorder(img, cfg.border, cfg.border, cfg.border, cfg.border, cv2.BORDER_CONSTANT, value=value)
    return np.ascontiguousarray(img)
