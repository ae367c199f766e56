"""OCR engines behind one small interface: ``engine.read(picture) -> text``.

Two engines, chosen by name (param ``ocr.engine``):

- ``tesseract``: Debian's ``tesseract-ocr`` with the ``fra`` language pack, driven by
  pytesseract (one subprocess per picture, killed after ``timeout_s``). The classic choice, and
  what the product description names.
- ``rapidocr``: PaddleOCR's PP-OCRv6 multilingual detector + recogniser run by onnxruntime,
  from the ``rapidocr`` wheel, which ships its default ONNX models inside the package. The
  models are loaded from the installed package by explicit path, so nothing is ever downloaded
  at run time (rapidocr downloads a model only when none is given and the file is missing).

A missing engine raises :class:`OcrEngineUnavailable` whose message is the exact command to
run. Engines are cheap, picklable descriptions: the heavy state (an onnxruntime session) is
built lazily in the process that reads, so a reader can ship one engine to each worker.
"""
from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import CdiscountError, ConfigError

#: Pinned install lines, quoted in error messages (keep in sync with pyproject.toml).
RAPIDOCR_PIP = "pip install 'rapidocr==3.10.0' 'onnxruntime==1.32.0'"
TESSERACT_APT = "sudo apt-get install -y tesseract-ocr tesseract-ocr-{lang}"

#: The ONNX files of the ``rapidocr`` wheel used here (its defaults: PP-OCRv6 small, multilingual
#: incl. French accents; a 0/180 degree text-direction classifier).
RAPIDOCR_MODELS = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


class OcrEngineUnavailable(CdiscountError, RuntimeError):
    """The engine (binary, language pack or Python package) is not installed; says what to install."""


class OcrTimeout(RuntimeError):
    """Reading one picture took longer than the engine's ``timeout_s``."""


class OcrEngine(ABC):
    """Reads the text of one picture (uint8 array, BGR or gray)."""

    name: ClassVar[str]

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`OcrEngineUnavailable` (with the install command) if the engine can't run."""

    @abstractmethod
    def read(self, image: np.ndarray) -> str:
        """The text found in ``image``, lines separated by newlines ('' when none)."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything that changes what :meth:`read` returns (part of the OCR cache key)."""

    def warm_up(self) -> None:
        """Load models now (workers do this before taking their first picture, so load time
        never counts against a picture's timeout)."""
        self.read(np.full((32, 32), 255, np.uint8))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"


class TesseractEngine(OcrEngine):
    """Tesseract through pytesseract. ``psm`` is the page segmentation mode: 6 (one uniform block
    of text) read the most title words here, 11 (sparse text) nearly as many, 3 (automatic page
    layout) gives up on half the 180 px covers."""

    name = "tesseract"

    def __init__(self, lang: str = "fra", psm: int = 6, oem: int = 1, timeout_s: float = 20.0) -> None:
        if not 0 <= psm <= 13:
            raise ConfigError(f"tesseract psm must be 0..13, got {psm}")
        self.lang, self.psm, self.oem, self.timeout_s = lang, int(psm), int(oem), float(timeout_s)

    def _binary(self) -> str:
        try:
            import pytesseract
        except ImportError as e:
            raise OcrEngineUnavailable("the tesseract engine needs pytesseract: pip install 'pytesseract==0.3.13'") from e
        cmd = pytesseract.pytesseract.tesseract_cmd
        found = shutil.which(cmd)
        if not found:
            raise OcrEngineUnavailable(
                f"tesseract binary {cmd!r} not found; install it with: {TESSERACT_APT.format(lang=self.lang)}")
        return found

    def check(self) -> None:
        binary = self._binary()
        out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30)
        have = {line.strip() for line in (out.stdout + out.stderr).splitlines()}
        for lang in self.lang.split("+"):
            if lang not in have:
                raise OcrEngineUnavailable(
                    f"tesseract has no {lang!r} language data (it has {sorted(have & _lang_like(have))}); "
                    f"install it with: {TESSERACT_APT.format(lang=lang)}")

    def read(self, image: np.ndarray) -> str:
        import pytesseract

        # Tesseract's own OpenMP threads would oversubscribe the cores the worker processes use;
        # the OCR workers set OMP_THREAD_LIMIT=1 in their own environment (reader._worker_main).
        # Never here: a process-wide variable leaks into every later subprocess (a training
        # started afterwards by the same process would run on one thread).
        if image.ndim == 3:  # pytesseract hands arrays to Pillow, which assumes RGB
            image = np.ascontiguousarray(image[:, :, ::-1])
        try:
            return pytesseract.image_to_string(image, lang=self.lang, config=f"--psm {self.psm} --oem {self.oem}",
                                               timeout=self.timeout_s).strip()
        except RuntimeError as e:
            if "timeout" in str(e).lower():
                raise OcrTimeout(f"tesseract took more than {self.timeout_s:g} s") from e
            raise
        except pytesseract.TesseractNotFoundError as e:
            raise OcrEngineUnavailable(f"tesseract not found; install it with: {TESSERACT_APT.format(lang=self.lang)}") from e

    def settings(self) -> dict[str, Any]:
        version = ""
        try:
            import pytesseract

            version = str(pytesseract.get_tesseract_version())
        except Exception:  # noqa: BLE001 - the version only labels the cache; check() reports problems
            pass
        return {"engine": self.name, "version": version, "lang": self.lang, "psm": self.psm, "oem": self.oem}


def _lang_like(lines: set[str]) -> set[str]:
    return {x for x in lines if x and " " not in x and ":" not in x}


class RapidOcrEngine(OcrEngine):
    """RapidOCR (PP-OCRv6 small, onnxruntime) with the models shipped inside the ``rapidocr`` wheel.

    ``threads`` is onnxruntime's intra-op thread count (1: parallelism comes from worker
    processes); ``text_score`` drops recognised lines below that confidence; ``use_cls`` runs
    the 180-degree text-direction classifier (covers are upright: off saves a third of the time).
    """

    name = "rapidocr"

    def __init__(self, threads: int = 1, text_score: float = 0.5, use_cls: bool = False) -> None:
        self.threads, self.text_score, self.use_cls = int(threads), float(text_score), bool(use_cls)
        self._ocr: Any = None

    @staticmethod
    def _package_dir() -> Path:
        try:
            import onnxruntime  # noqa: F401
            import rapidocr
        except ImportError as e:
            raise OcrEngineUnavailable(f"the rapidocr engine needs its Python packages ({e.name} is missing); "
                                       f"install them with: {RAPIDOCR_PIP}") from e
        return Path(rapidocr.__file__).parent

    def _model_paths(self) -> dict[str, Path]:
        models = self._package_dir() / "models"
        paths = {task: models / fname for task, fname in RAPIDOCR_MODELS.items()}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:  # never let rapidocr fall back to downloading them
            raise OcrEngineUnavailable(f"rapidocr's bundled models are missing ({', '.join(missing)}); "
                                       f"reinstall the pinned wheel: {RAPIDOCR_PIP} --force-reinstall")
        return paths

    def check(self) -> None:
        self._model_paths()

    def _engine(self) -> Any:
        if self._ocr is None:
            from rapidocr import RapidOCR

            params: dict[str, Any] = {f"{task}.model_path": str(p) for task, p in self._model_paths().items()}
            params.update({
                "Global.log_level": "error",
                "Global.text_score": self.text_score,
                "Global.use_cls": self.use_cls,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            })
            self._ocr = RapidOCR(params=params)
        return self._ocr

    def read(self, image: np.ndarray) -> str:
        if image.ndim == 2:  # the detector takes 3 channels
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        result = self._engine()(image)
        return "\n".join(t for t in (result.txts or ()) if t.strip())

    def settings(self) -> dict[str, Any]:
        from importlib import metadata

        try:
            version = metadata.version("rapidocr")
        except metadata.PackageNotFoundError:
            version = ""
        return {"engine": self.name, "version": version, "models": sorted(RAPIDOCR_MODELS.values()),
                "text_score": self.text_score, "use_cls": self.use_cls}

    def __getstate__(self) -> dict[str, Any]:  # ship the description, not the onnxruntime session
        state = self.__dict__.copy()
        state["_ocr"] = None
        return state


#: Engine name -> class, as selected by the ``ocr.engine`` param.
ENGINES: dict[str, type[OcrEngine]] = {TesseractEngine.name: TesseractEngine, RapidOcrEngine.name: RapidOcrEngine}


def make_engine(name: str, **options: Any) -> OcrEngine:
    """The engine called ``name`` with its options (e.g. ``psm=11, timeout_s=20`` for tesseract),
    checked: raises :class:`OcrEngineUnavailable` with the install command if it can't run."""
    if name not in ENGINES:
        raise ConfigError(f"unknown OCR engine {name!r}; known: {sorted(ENGINES)}")
    engine = ENGINES[name](**options)
    engine.check()
    return engine


def available_engines() -> list[str]:
    """Names of the engines that can run on this machine (default options)."""
    names = []
    for name, cls in ENGINES.items():
        try:
            cls().check()
        except OcrEngineUnavailable:
            continue
        names.append(name)
    return names
