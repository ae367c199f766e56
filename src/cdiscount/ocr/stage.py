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

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from .. import paths
from ..atomic import atomic_dir, write_json
from ..hierarchy import densify
from ..params import config_from
from ..topk import PRODUCT_SCHEMA, product_table, topk
from .classifier import category_tokens_from_texts, fit_text_model, predict_proba, token_match
from .engines import make_engine
from .fusion import Fusion, accuracy, cross_fitted, fit_fusion, image_probs_from_topk, labels_to_index
from .preprocess import PreprocessConfig
from .reader import SpanReader, load_cache, read_images, span_jobs
from .text import product_texts

log = logging.getLogger(__name__)

OCR_DIR = Path("data/ocr")


@dataclass(frozen=True)
class OcrConfig:
    """The ``ocr`` section of params.yaml."""

    level1: list[str] = field(default_factory=lambda: ["LIBRAIRIE"])
    engine: str = "tesseract"  # tesseract | rapidocr
    psm: int = 6  # tesseract page segmentation mode
    preprocess: dict[str, Any] = field(default_factory=dict)  # empty = the engine's defaults
    timeout_s: float = 20.0
    workers: int = 0  # 0 = all cores


@dataclass(frozen=True)
class OcrClassifierConfig:
    """The ``ocr_classifier`` section of params.yaml."""

    fusion: str = "stack"  # stack | poe
    C: float = 4.0
    min_df: int = 1  # raise to 2-3 at real scale (OCR noise makes one-off n-grams)
    min_letters: int = 4
    top_k: int = 20


def selected_level1(tax: pd.DataFrame, level1: list[str]) -> pd.DataFrame:
    """Taxonomy rows of the selected level-1 groups (names compared without surrounding spaces)."""
    wanted = {s.strip() for s in level1}
    known = set(tax["level1"].str.strip())
    unknown = wanted - known
    if unknown:
        raise ValueError(f"ocr.level1: {sorted(unknown)} not in the taxonomy (e.g. {sorted(known)[:5]})")
    return tax[tax["level1"].str.strip().isin(wanted)].sort_values("idx")


def predicted_idx(preds: pd.DataFrame) -> pd.Series:
    """``_id`` -> the backbone's top-1 class index."""
    return pd.Series([int(a[0]) for a in preds["top_idx"]], index=preds["_id"].to_numpy())


def _selected_products(split: str, tax: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    preds = pd.read_parquet(paths.PREDS / "backbone" / f"{split}_products.parquet", columns=["_id", "top_idx"])
    chosen = set(preds["_id"][predicted_idx(preds).isin(classes).to_numpy()])
    if split == "train":
        truth = pd.read_parquet(paths.INTERIM / "train_products.parquet", columns=["_id", "category_id"])
        chosen |= set(truth["_id"][truth["category_id"].isin(tax.set_index("idx").loc[classes, "category_id"])])
    return np.array(sorted(chosen), dtype=np.int64)


def run_ocr(params: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    cfg = config_from(OcrConfig, params, "ocr")
    tax = pd.read_parquet(paths.INTERIM / "taxonomy.parquet")
    classes = selected_level1(tax, cfg.level1)["idx"].to_numpy()
    engine = make_engine(cfg.engine, **({"psm": cfg.psm, "timeout_s": cfg.timeout_s} if cfg.engine == "tesseract"
                                        else {}))
    pre = PreprocessConfig.from_params(cfg.preprocess) if cfg.preprocess else PreprocessConfig.for_engine(cfg.engine)
    sources = json.loads((paths.INTERIM / "sources.json").read_text())
    OCR_DIR.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"engine": cfg.engine, "level1": cfg.level1}
    for split in ("train", "test"):
        products = _selected_products(split, tax, classes)
        images = pd.read_parquet(paths.INTERIM / f"{split}_images.parquet",
                                 columns=["_id", "md5", "jpeg_offset", "jpeg_length"])
        images = images[images["_id"].isin(products)]
        s = read_images(span_jobs(images["md5"], images["jpeg_offset"], images["jpeg_length"]), engine, pre,
                        OCR_DIR / "text.parquet", store=SpanReader(sources[split]["path"]),
                        workers=cfg.workers or None, timeout_s=cfg.timeout_s, progress=progress, total=len(images))
        summary[split] = {"products": int(len(products)), **s.to_dict()}
        log.info("ocr %s: %s", split, summary[split])
    train = summary["train"]  # the headline figures: the training selection holds most pictures
    summary.update({"images_read": train["read"] + summary["test"]["read"],
                    "non_empty_rate": train["non_empty_rate"], "mean_chars": train["mean_chars"],
                    "seconds_per_image": train["seconds_per_image"]})
    write_json(paths.METRICS / "ocr.json", summary)
    return summary


def run_ocr_classifier(ocr_params: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    ocfg = config_from(OcrConfig, ocr_params, "ocr")
    cfg = config_from(OcrClassifierConfig, params, "ocr_classifier")
    tax = pd.read_parquet(paths.INTERIM / "taxonomy.parquet").sort_values("idx")
    sel = selected_level1(tax, ocfg.level1)
    classes, cat_ids = sel["idx"].to_numpy(), sel["category_id"].to_numpy()
    text_of = load_cache(OCR_DIR / "text.parquet")
    split = pd.read_parquet(paths.SPLIT)
    texts = {s: product_texts(pd.read_parquet(paths.INTERIM / f"{s}_images.parquet", columns=["_id", "img_idx", "md5"]),
                              text_of) for s in ("train", "test")}
    fold = split.set_index("_id")
    train = split[(split["fold"] == "train") & split["category_id"].isin(cat_ids)]
    flat_train = pd.read_parquet(paths.PREDS / "backbone" / "train_products.parquet")
    val = split[split["fold"] == "val"]
    flat_val = flat_train[flat_train["_id"].isin(val["_id"])].set_index("_id").loc[val["_id"]].reset_index()
    try:
        model = fit_text_model(texts["train"].reindex(train["_id"]).fillna("").tolist(),
                               train["category_id"].tolist(), C=cfg.C, min_df=cfg.min_df, min_letters=cfg.min_letters)
    except ValueError as e:  # e.g. a tiny raw folder: no text model, the component is the backbone
        return _without_text_model(str(e), ocfg, flat_val)

    # Evaluation on validation products of the selected categories (their true category).
    inside = flat_val[fold.loc[flat_val["_id"], "category_id"].isin(cat_ids).to_numpy()]
    y_cat = fold.loc[inside["_id"], "category_id"].to_numpy()
    y = labels_to_index(list(y_cat), list(cat_ids))
    val_texts = texts["train"].reindex(inside["_id"]).fillna("").tolist()
    p_img = image_probs_from_topk(inside["top_idx"].tolist(), inside["top_prob"].tolist(), classes, len(tax))
    pt = predict_proba(model, val_texts, classes=cat_ids)
    if (y >= 0).sum() >= 10:
        fusion = fit_fusion(cfg.fusion, p_img, pt.proba, pt.usable, y)
        honest = cross_fitted(cfg.fusion, p_img, pt.proba, pt.usable, y)
    else:  # too few validation products to fit two weights: an even product of experts
        log.warning("ocr_classifier: %d validation products in %s; fusion weights not fitted", len(y), ocfg.level1)
        fusion = Fusion(cfg.fusion, 1.0, 1.0)
        honest = fusion.apply(p_img, pt.proba, pt.usable)
    pools = category_tokens_from_texts(texts["train"].reindex(train["_id"]).fillna(""), train["category_id"])
    matched = np.array([token_match(t, pools) for t in val_texts], dtype=object)
    text_pred = np.where(pt.usable, cat_ids[pt.proba.argmax(axis=1)], -1)

    out_dir = paths.PREDS / "ocr"
    with atomic_dir(out_dir) as tmp:
        comp_val = _write_component(flat_val, texts["train"], model, fusion, classes, cat_ids, len(tax), cfg,
                                    tmp / "val_products.parquet")
        flat_test = pd.read_parquet(paths.PREDS / "backbone" / "test_products.parquet")
        _write_component(flat_test, texts["test"], model, fusion, classes, cat_ids, len(tax), cfg,
                         tmp / "test_products.parquet")
    truth_val = fold.loc[flat_val["_id"], "category_id"].map(tax.set_index("category_id")["idx"]).to_numpy()
    metrics = {
        "level1": ocfg.level1,
        "val_products": int(len(inside)),
        "coverage": float(pt.coverage),
        "image_only_accuracy": accuracy(p_img, y),
        "text_only_accuracy": float((text_pred == y_cat).mean()) if len(y_cat) else float("nan"),
        "token_match_accuracy": float(np.mean([m == c for m, c in zip(matched, y_cat)])) if len(y_cat) else float("nan"),
        "fused_accuracy": accuracy(honest, y),
        "fused_accuracy_in_sample": accuracy(fusion.apply(p_img, pt.proba, pt.usable), y),
        "fusion": fusion.to_dict(),
        "product_accuracy": float((comp_val == truth_val).mean()),
    }
    write_json(paths.METRICS / "ocr_classifier.json", metrics)
    log.info("ocr_classifier on validation (selected categories): %s", metrics)
    return metrics


def _without_text_model(reason: str, ocfg: OcrConfig, flat_val: pd.DataFrame) -> dict[str, Any]:
    """Pass the backbone's predictions through unchanged and say why, instead of failing the pipeline."""
    log.warning("ocr_classifier: no text model (%s); the ocr component repeats the backbone", reason)
    with atomic_dir(paths.PREDS / "ocr") as tmp:
        flat_val.to_parquet(tmp / "val_products.parquet", index=False)
        pd.read_parquet(paths.PREDS / "backbone" / "test_products.parquet").to_parquet(tmp / "test_products.parquet",
                                                                                       index=False)
    metrics = {"level1": ocfg.level1, "text_model": f"not fitted: {reason}", "coverage": 0.0}
    write_json(paths.METRICS / "ocr_classifier.json", metrics)
    return metrics


def _write_component(flat: pd.DataFrame, texts: pd.Series, model, fusion, classes: np.ndarray, cat_ids: np.ndarray,
                     n_classes: int, cfg: OcrClassifierConfig, out: Path, chunk: int = 20000) -> np.ndarray:
    """The backbone's top-K with the selected categories re-scored by the fusion where the product
    is predicted in them and has usable text; returns the top-1 class per product."""
    top1 = []
    with pq.ParquetWriter(out, PRODUCT_SCHEMA) as w:
        for b in range(0, len(flat), chunk):
            part = flat.iloc[b : b + chunk]
            dense = densify(part["top_idx"].tolist(), part["top_prob"].tolist(), n_classes)
            routed = np.isin(dense.argmax(axis=1), classes)
            if routed.any():
                rows = np.flatnonzero(routed)
                pt = predict_proba(model, texts.reindex(part["_id"].iloc[rows]).fillna("").tolist(), classes=cat_ids)
                mass = dense[np.ix_(rows, classes)].sum(axis=1, keepdims=True)
                p_img = dense[np.ix_(rows, classes)] / mass
                dense[np.ix_(rows, classes)] = mass * fusion.apply(p_img, pt.proba, pt.usable)
            idx, prob = topk(torch.from_numpy(dense), cfg.top_k)
            top1.append(idx[:, 0].astype(np.int64))
            w.write_table(product_table(part["_id"].to_numpy(), idx, prob))
    return np.concatenate(top1) if top1 else np.zeros(0, np.int64)
