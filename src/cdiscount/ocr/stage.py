"""Stages ``ocr`` and ``ocr_classifier``: read the covers, classify the text, fuse it with the image.

``ocr`` reads the pictures of products that belong (train and validation: true category) or are
predicted to belong (every product: the backbone's top-1) to the level-1 groups in
``ocr.level1``. The text cache is the stage's persistent output, keyed by MD5 and by the engine
settings, so identical covers are read once and a re-run only reads what is new.

``ocr_classifier`` fits a TF-IDF + logistic model on training-fold texts, fuses it with the
backbone's probabilities on the selected categories (fitted on validation; the cross-fitted
accuracy is the honest number), and writes a full top-K component for the ensemble: the
backbone's distribution, with the selected categories' mass redistributed by the fused
estimate for products predicted in the selected groups that have usable text.
"""
from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_dir, write_json
from ..errors import ConfigError
from ..params import Section
from ..topk import densify, densify_columns, iter_topk, product_table, read_top1, read_topk, topk, writer
from .classifier import category_tokens_from_texts, fit_text_model, predict_proba, token_match
from .engines import make_engine
from .text_fusion import Fusion, accuracy, cross_fitted, fit_fusion, labels_to_index, renormalize
from .preprocess import PreprocessConfig
from .reader import SpanReader, load_cache, read_images, span_jobs
from .text import product_texts

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class OcrConfig(Section):
    """The ``ocr`` section of params.yaml."""

    SECTION = "ocr"
    level1: list[str]
    engine: Literal["tesseract", "rapidocr"]
    psm: int  # tesseract page segmentation mode
    preprocess: dict[str, Any]  # empty = the engine's defaults
    timeout_s: float
    workers: int  # 0 = all cores

    def check(self) -> None:
        self.require("psm", 0 <= self.psm <= 13, "a tesseract page segmentation mode, 0 to 13")
        self.require("timeout_s", self.timeout_s > 0, "seconds > 0 per picture")
        self.require("workers", self.workers >= 0, "0 (all cores) or a number of processes")


@dataclass(frozen=True)
class OcrClassifierConfig(Section):
    """The ``ocr_classifier`` section of params.yaml."""

    SECTION = "ocr_classifier"
    fusion: Literal["stack", "poe"]
    C: float
    min_df: int  # raise to 2-3 at real scale (OCR noise makes one-off n-grams)
    min_letters: int
    top_k: int

    def check(self) -> None:
        self.require("C", self.C > 0, "> 0")
        self.require("min_df", self.min_df >= 1, ">= 1")
        self.require("min_letters", self.min_letters >= 0, ">= 0")
        self.require("top_k", self.top_k >= 1, ">= 1")


def selected_level1(tax: pd.DataFrame, level1: list[str]) -> pd.DataFrame:
    """Taxonomy rows of the selected level-1 groups (names compared without surrounding spaces).

    A name close to one the taxonomy has (``LIBRARIE``) is a typo: an error saying which was meant.
    A name unlike any (the default ``LIBRAIRIE`` on a dataset that is not Cdiscount's) is left out
    with a warning; with none left the OCR component is left out of the ensemble.
    """
    wanted = {s.strip() for s in level1}
    known = set(tax["level1"].str.strip())
    for name in sorted(wanted - known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if close:
            raise ConfigError(f"ocr.level1: {name!r} is not a level-1 group of the taxonomy; did you mean "
                              f"{close[0]!r}?")
        log.warning("ocr.level1: %r is not a level-1 group of this taxonomy (it has e.g. %s): left out", name,
                    sorted(known)[:5])
    return tax[tax["level1"].str.strip().isin(wanted)].sort_values("idx")


def _left_out(what: str, level1: list[str], metrics_path: Path) -> dict[str, Any]:
    summary = {"level1": level1, "skipped": f"none of ocr.level1 is in this taxonomy: {what}"}
    log.warning("%s: %s", metrics_path.stem, summary["skipped"])
    write_json(metrics_path, summary)
    return summary


def _selected_products(flat: Path, split: str, tax: pd.DataFrame, classes: np.ndarray, interim: Path) -> np.ndarray:
    top1 = read_top1(flat / f"{split}_products.parquet")
    chosen = set(top1.index[top1.isin(classes).to_numpy()])
    if split == "train":
        truth = pd.read_parquet(interim / "train_products.parquet", columns=["_id", "category_id"])
        chosen |= set(truth["_id"][truth["category_id"].isin(tax.set_index("idx").loc[classes, "category_id"])])
    return np.array(sorted(chosen), dtype=np.int64)


def run_ocr(cfg: OcrConfig, *, interim: Path, flat: Path, cache: Path, metrics_path: Path, progress: bool
            ) -> dict[str, Any]:
    tax = pd.read_parquet(interim / "taxonomy.parquet")
    classes = selected_level1(tax, cfg.level1)["idx"].to_numpy()
    if not len(classes):
        cache.parent.mkdir(parents=True, exist_ok=True)
        return _left_out("nothing to read", cfg.level1, metrics_path)
    engine = make_engine(cfg.engine, **({"psm": cfg.psm, "timeout_s": cfg.timeout_s} if cfg.engine == "tesseract"
                                        else {}))
    pre = PreprocessConfig.from_params(cfg.preprocess) if cfg.preprocess else PreprocessConfig.for_engine(cfg.engine)
    sources = json.loads((interim / "sources.json").read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"engine": cfg.engine, "level1": cfg.level1}
    for split in ("train", "test"):
        products = _selected_products(flat, split, tax, classes, interim)
        images = pd.read_parquet(interim / f"{split}_images.parquet",
                                 columns=["_id", "md5", "jpeg_offset", "jpeg_length"])
        images = images[images["_id"].isin(products)]
        s = read_images(span_jobs(images["md5"], images["jpeg_offset"], images["jpeg_length"]), engine, pre,
                        cache, store=SpanReader(sources[split]["path"]),
                        workers=cfg.workers or None, timeout_s=cfg.timeout_s, progress=progress, total=len(images))
        summary[split] = {"products": int(len(products)), **s.to_dict()}
        log.info("ocr %s: %s", split, summary[split])
    train = summary["train"]  # the headline figures: the training selection holds most pictures
    summary.update({"images_read": train["read"] + summary["test"]["read"],
                    "non_empty_rate": train["non_empty_rate"], "mean_chars": train["mean_chars"],
                    "seconds_per_image": train["seconds_per_image"]})
    write_json(metrics_path, summary)
    return summary


def _val_topk(flat_train: Path, val_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backbone's top-K of the validation products, in ``val_ids`` order."""
    ids, idx, prob = read_topk(flat_train, val_ids)
    rows = pd.Index(ids).get_indexer(val_ids)
    return ids[rows], idx[rows], prob[rows]


def run_ocr_classifier(level1: list[str], cfg: OcrClassifierConfig, *, cache: Path, interim: Path, split_path: Path,
                       flat: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    tax = pd.read_parquet(interim / "taxonomy.parquet").sort_values("idx")
    sel = selected_level1(tax, level1)
    if sel.empty:  # the ensemble leaves a component without predictions out
        with atomic_dir(out_dir) as tmp:
            (tmp / "README").write_text("no OCR component: none of ocr.level1 is in this taxonomy\n")
        return _left_out("no OCR component", level1, metrics_path)
    classes, cat_ids = sel["idx"].to_numpy(), sel["category_id"].to_numpy()
    text_of = load_cache(cache)
    split = pd.read_parquet(split_path)
    texts = {s: product_texts(pd.read_parquet(interim / f"{s}_images.parquet", columns=["_id", "img_idx", "md5"]),
                              text_of) for s in ("train", "test")}
    fold = split.set_index("_id")
    train = split[(split["fold"] == "train") & split["category_id"].isin(cat_ids)]
    val = split[split["fold"] == "val"]
    flat_val = _val_topk(flat / "train_products.parquet", val["_id"].to_numpy())
    try:
        model = fit_text_model(texts["train"].reindex(train["_id"]).fillna("").tolist(),
                               train["category_id"].tolist(), C=cfg.C, min_df=cfg.min_df, min_letters=cfg.min_letters)
    except ValueError as e:  # e.g. a tiny raw folder: no text model, the component is the backbone
        return _without_text_model(str(e), level1, flat_val, flat, out_dir, metrics_path)

    # Evaluation on validation products of the selected categories (their true category).
    val_ids, val_idx, val_prob = flat_val
    inside = fold.loc[val_ids, "category_id"].isin(cat_ids).to_numpy()
    y_cat = fold.loc[val_ids[inside], "category_id"].to_numpy()
    y = labels_to_index(list(y_cat), list(cat_ids))
    val_texts = texts["train"].reindex(val_ids[inside]).fillna("").tolist()
    p_img = renormalize(densify_columns(val_idx[inside], val_prob[inside], classes, len(tax)))
    pt = predict_proba(model, val_texts, classes=cat_ids)
    if (y >= 0).sum() >= 10:
        fusion = fit_fusion(cfg.fusion, p_img, pt.proba, pt.usable, y)
        honest = cross_fitted(cfg.fusion, p_img, pt.proba, pt.usable, y)
    else:  # too few validation products to fit two weights: an even product of experts
        log.warning("ocr_classifier: %d validation products in %s; fusion weights not fitted", len(y), level1)
        fusion = Fusion(cfg.fusion, 1.0, 1.0)
        honest = fusion.apply(p_img, pt.proba, pt.usable)
    pools = category_tokens_from_texts(texts["train"].reindex(train["_id"]).fillna(""), train["category_id"])
    matched = np.array([token_match(t, pools) for t in val_texts], dtype=object)
    text_pred = np.where(pt.usable, cat_ids[pt.proba.argmax(axis=1)], -1)

    with atomic_dir(out_dir) as tmp:
        comp_val = _write_component([flat_val], texts["train"], model, fusion, classes, cat_ids, len(tax), cfg,
                                    tmp / "val_products.parquet")
        _write_component(iter_topk(flat / "test_products.parquet"), texts["test"], model, fusion, classes, cat_ids,
                         len(tax), cfg, tmp / "test_products.parquet")
    truth_val = fold.loc[val_ids, "category_id"].map(tax.set_index("category_id")["idx"]).to_numpy()
    metrics = {
        "level1": level1,
        "val_products": int(inside.sum()),
        "coverage": float(pt.coverage),
        "image_only_accuracy": accuracy(p_img, y),
        "text_only_accuracy": float((text_pred == y_cat).mean()) if len(y_cat) else float("nan"),
        "token_match_accuracy": float(np.mean([m == c for m, c in zip(matched, y_cat)])) if len(y_cat) else float("nan"),
        "fused_accuracy": accuracy(honest, y),
        "fused_accuracy_in_sample": accuracy(fusion.apply(p_img, pt.proba, pt.usable), y),
        "fusion": fusion.to_dict(),
        "product_accuracy": float((comp_val == truth_val).mean()),
    }
    write_json(metrics_path, metrics)
    log.info("ocr_classifier on validation (selected categories): %s", metrics)
    return metrics


def _without_text_model(reason: str, level1: list[str], flat_val: tuple[np.ndarray, np.ndarray, np.ndarray],
                        flat: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Pass the backbone's predictions through unchanged and say why, instead of failing the pipeline."""
    log.warning("ocr_classifier: no text model (%s); the ocr component repeats the backbone", reason)
    with atomic_dir(out_dir) as tmp:
        with writer(tmp / "val_products.parquet") as w:
            w.write_table(product_table(*flat_val))
        with writer(tmp / "test_products.parquet") as w:
            for batch in iter_topk(flat / "test_products.parquet"):
                w.write_table(product_table(*batch))
    metrics = {"level1": level1, "text_model": f"not fitted: {reason}", "coverage": 0.0}
    write_json(metrics_path, metrics)
    return metrics


def _write_component(batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], texts: pd.Series, model, fusion,
                     classes: np.ndarray, cat_ids: np.ndarray, n_classes: int, cfg: OcrClassifierConfig, out: Path,
                     chunk: int = 20000) -> np.ndarray:
    """The backbone's top-K with the selected categories re-scored by the fusion where the product
    is predicted in them and has usable text; returns the top-1 class per product. Streams: one
    chunk of dense rows in memory."""
    top1 = []
    with writer(out) as w:
        for all_ids, all_idx, all_prob in batches:
            for b in range(0, len(all_ids), chunk):
                ids = all_ids[b : b + chunk]
                dense = densify(all_idx[b : b + chunk], all_prob[b : b + chunk], n_classes)
                routed = np.isin(dense.argmax(axis=1), classes)
                if routed.any():
                    rows = np.flatnonzero(routed)
                    pt = predict_proba(model, texts.reindex(ids[rows]).fillna("").tolist(), classes=cat_ids)
                    mass = dense[np.ix_(rows, classes)].sum(axis=1, keepdims=True)
                    p_img = dense[np.ix_(rows, classes)] / mass
                    dense[np.ix_(rows, classes)] = mass * fusion.apply(p_img, pt.proba, pt.usable)
                idx, prob = topk(torch.from_numpy(dense), cfg.top_k)
                top1.append(idx[:, 0].astype(np.int64))
                w.write_table(product_table(ids, idx, prob))
    return np.concatenate(top1) if top1 else np.zeros(0, np.int64)
