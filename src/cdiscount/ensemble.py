"""Stage ``ensemble``: weighted combination of every component, then the duplicate-picture override.

Weights are searched on a simplex grid over validation products (a subsample of
``fit_products`` at real scale), geometric (weighted log-probabilities) or arithmetic mean.
Every one-component weight vector is on the grid, so the fitted ensemble is never worse than its
best component on the products it was fitted on; a two-fold cross-fitted accuracy is reported
next to it so the optimism of fitting on validation is visible.

The component ``backbone`` in ``ensemble.components`` stands for every entry of ``backbones.entries``:
one component ``backbone/<name>`` per backbone (its folder under data/preds), each with its own weight;
``backbone/<name>`` names one alone. A folder under data/preds/backbone whose entry was removed is
left out (and named in the log), so removing an entry removes its component.

Then products whose pictures are exact copies of training pictures with one unambiguous
category take that category (``override``); the ambiguous votes joined the weighted mix as the
``dedup_vote`` component. On validation the lookup uses the training fold only.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .atomic import atomic_dir, write_json
from .backbones import PREDS as BACKBONE_PREDS, component_name
from .errors import ConfigError, InputError
from .components import Component, ComponentStream, candidates, combine, read_component, simplex_grid
from .folds import fold_products
from .lookup import Votes, vote_component, vote_width, votes_from_dedup
from .params import Section
from .parquet_file import parquet_file
from .topk import PRODUCT_SCHEMA, concat, product_table

log = logging.getLogger(__name__)

BACKBONE = BACKBONE_PREDS.name  # "backbone": every backbone entry's component in ensemble.components
LABEL_SCHEMA = pa.schema([("_id", pa.int64()), ("category_id", pa.int64()), ("source", pa.string())])


@dataclass(frozen=True)
class EnsembleConfig(Section):
    """The ``ensemble`` section of params.yaml."""

    SECTION = "ensemble"
    components: list[str]  # a component without predictions is left out
    mean: Literal["geometric", "arithmetic"]
    weight_step: float
    fit_products: int
    dedup_blend: bool
    override: bool
    min_votes: int
    vote_smoothing: float
    placeholder_min_categories: int
    top_k: int
    chunk: int
    seed: int

    def check(self) -> None:
        self.require("components", len(self.components) >= 1 and len(set(self.components)) == len(self.components),
                     "a non-empty list of distinct component names (folders under data/preds)")
        self.require("weight_step", 0 < self.weight_step <= 1 and abs(round(1 / self.weight_step) * self.weight_step
                                                                      - 1) < 1e-9,
                     "a step that divides 1 (0.5, 0.25, 0.2, 0.1, 0.05, ...)")
        for key in ("fit_products", "min_votes", "top_k", "chunk"):
            self.require(key, getattr(self, key) >= 1, ">= 1")
        self.require("vote_smoothing", self.vote_smoothing >= 0, ">= 0")
        self.require("placeholder_min_categories", self.placeholder_min_categories >= 2, ">= 2")
        self.require("seed", self.seed >= 0, "an integer >= 0")


def expand_components(components: list[str], backbones: list[str]) -> list[str]:
    """``ensemble.components`` with ``backbone`` replaced by ``backbone/<name>`` for every backbone entry."""
    out: list[str] = []
    for name in components:
        if name == BACKBONE:
            out += [component_name(b) for b in backbones]
            continue
        if name.startswith(BACKBONE + "/") and name.split("/", 1)[1] not in backbones:
            raise ConfigError(f"ensemble.components: {name!r} is not a backbone entry (backbones.entries: "
                              f"{', '.join(backbones)})")
        out.append(name)
    return list(dict.fromkeys(out))


def component_paths(preds: Path, name: str) -> dict[str, Path]:
    """Where a component's validation and test predictions are (a backbone keeps all train products)."""
    base = preds / name
    if name == BACKBONE or name.startswith(BACKBONE + "/"):
        return {"val": base / "train_products.parquet", "test": base / "test_products.parquet"}
    return {"val": base / "val_products.parquet", "test": base / "test_products.parquet"}


def candidate_probs(comps: list[Component], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates [N, U], per-component candidate probabilities [M, N, U] float32), filled component by
    component (``np.stack`` of the lookups held them twice)."""
    cand = candidates(comps)
    probs = np.empty((len(comps), *cand.shape), dtype=np.float32)
    for j, c in enumerate(comps):
        probs[j] = c.lookup(cand, n_classes)
    return cand, probs


#: Bytes of scratch per scored batch of weight vectors in :func:`fit_weights` (about three [N, U] float64
#: arrays per vector): at 50,000 products and 7 components (U = 140) a fixed batch of 8 needs about
#: 8 x 50,000 x 140 x 8 bytes x 3 = 1.3 GB.
FIT_SCRATCH_BYTES = 1 << 27


def fit_weights(probs: np.ndarray, cand: np.ndarray, true: np.ndarray, mean: str, step: float,
                batch: int = 8) -> tuple[np.ndarray, float]:
    """Grid weights with the best top-1 accuracy over per-component candidate probabilities
    [M, N, U]: :func:`grid_fit` of their :func:`fit_source` (a copy: ``probs`` is left as it is)."""
    return grid_fit(fit_source(probs, mean), cand, true, mean, step, batch)


def fit_source(probs: np.ndarray, mean: str, *, in_place: bool = False) -> np.ndarray:
    """What the grid mixes: log-probabilities (geometric mean) or the probabilities (arithmetic), float32.

    ``in_place``: the logs overwrite ``probs`` (float32 already), so the fit holds one [M, N, U] array,
    not the probabilities and their logs side by side (at 50,000 products, 7 components and U = 140:
    196 MB each)."""
    probs = probs.astype(np.float32, copy=not in_place)
    return np.log(probs, out=probs) if mean == "geometric" else probs


def grid_fit(source: np.ndarray, cand: np.ndarray, true: np.ndarray, mean: str, step: float,
             batch: int = 8) -> tuple[np.ndarray, float]:
    """Grid weights with the best top-1 accuracy; ties go to the lowest log-loss of the true class
    (so a component that only repeats another's ranking, or is uniform, does not win a tie), then
    to the first in grid order. ``source``: :func:`fit_source` [M, N, U], read, never copied.

    The grid is scored ``batch`` weight vectors at a time with one matrix product ([g, M] x
    [M, N x U]) instead of a Python loop of weighted sums, and the log-loss is computed only for the
    vectors tied at the best accuracy: at 50,000 products and five components (1,001 vectors) the
    fit takes seconds, not minutes. ``batch`` is a maximum: fewer vectors go at once where their scratch
    would pass :data:`FIT_SCRATCH_BYTES`, so the fit's memory does not grow with the fitted products.
    """
    grid = simplex_grid(len(source), step)
    m, n, u = source.shape
    if n == 0:
        return grid[0], 0.0
    batch = max(1, min(batch, FIT_SCRATCH_BYTES // max(1, 3 * 8 * n * u)))
    source = source.reshape(m, -1)
    acc = np.empty(len(grid))
    for b in range(0, len(grid), batch):
        s = _grid_scores(grid[b : b + batch], source, mean).reshape(-1, n, u)
        pick = np.take_along_axis(np.broadcast_to(cand, s.shape), s.argmax(axis=2)[..., None], axis=2)[..., 0]
        acc[b : b + batch] = (pick == true).mean(axis=1)
    tied = np.flatnonzero(np.abs(acc - acc.max()) <= 1e-12)
    is_true = cand == true[:, None]
    loss = np.empty(len(tied))
    for b in range(0, len(tied), batch):
        s = _grid_scores(grid[tied[b : b + batch]], source, mean).reshape(-1, n, u).astype(np.float64)
        top = s.max(axis=2, keepdims=True)
        norm = (top + np.log(np.exp(s - top).sum(axis=2, keepdims=True)))[..., 0]
        hit = np.where(is_true, s, -np.inf).max(axis=2)
        loss[b : b + batch] = np.mean(norm - np.where(np.isfinite(hit), hit, norm - 30.0), axis=1)
    chosen, best = tied[0], loss[0]
    for t, value in zip(tied[1:], loss[1:]):  # the first of the lowest losses (1e-9 tolerance), in grid order
        if value < best - 1e-9:
            chosen, best = t, value
    return grid[chosen], float(acc[chosen])


def _grid_scores(weights: np.ndarray, source: np.ndarray, mean: str) -> np.ndarray:
    """[g, N x U] scores of ``g`` weight vectors over [M, N x U] log-probabilities (geometric)
    or probabilities (arithmetic): :func:`combine` for many weight vectors at once."""
    mixed = weights.astype(np.float32) @ source
    return mixed if mean == "geometric" else np.log(np.maximum(mixed, 1e-12))


def _subset(comps: list[Component], rows: np.ndarray) -> list[Component]:
    return [Component(c.name, c.idx[rows], c.prob[rows]) for c in comps]


def _scores(comps: list[Component], w: np.ndarray, mean: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    cand, probs = candidate_probs(comps, n_classes)
    s = combine(np.log(probs), probs, w, mean)
    return cand, s


def run_ensemble(cfg: EnsembleConfig, *, taxonomy: Path, test_products: Path, split_path: Path, dedup: Path,
                 preds: Path, out_dir: Path, metrics_path: Path, progress: bool,
                 backbones: list[str] | None = None) -> dict[str, Any]:
    """Fit, apply and measure the ensemble; ``backbones`` = the entries of ``backbones.entries`` (None: the
    component names are folders under ``preds`` as they are)."""
    stale = sorted(p.name for p in (preds / BACKBONE).glob("*") if p.is_dir() and p.name not in backbones
                   and not p.name.startswith(".")) if backbones is not None and (preds / BACKBONE).is_dir() else []
    if stale:
        log.warning("%s: %s are not in backbones.entries (removed entries?): left out; delete those folders "
                    "(and data/features/<name>) to free the disk", preds / BACKBONE, stale)
    tax = pd.read_parquet(taxonomy).sort_values("idx")
    n_classes, idx_of = len(tax), tax.set_index("category_id")["idx"]
    cat_of = tax["category_id"].to_numpy()
    val = fold_products(split_path, "val")
    ids = {"val": val["_id"].to_numpy(),
           "test": pd.read_parquet(test_products, columns=["_id"])["_id"].to_numpy()}
    true = val["category_id"].map(idx_of).to_numpy()
    found: list[tuple[str, dict[str, Path]]] = []
    for name in expand_components(cfg.components, backbones) if backbones is not None else cfg.components:
        where = component_paths(preds, name)
        if not all(p.exists() for p in where.values()):
            log.info("component %s: no predictions at %s, left out", name, where["val"].parent)
            continue
        found.append((name, where))
    if not found:
        raise InputError(preds, f"none of the ensemble.components {cfg.components} has predictions here")
    votes = _votes(cfg, val, dedup)
    names = [n for n, _ in found] + (["dedup_vote"] if cfg.dedup_blend else [])
    val_chunks = _val_source(found, ids["val"], votes["val"], idx_of, cfg)

    rng = np.random.default_rng(cfg.seed)
    fit_rows = np.sort(rng.permutation(len(true))[: cfg.fit_products])
    fit, per_comp_hits = _fit_subset(val_chunks(), fit_rows, true)
    weights, fitted_acc, cv, no_dedup, fitted_best = _fit(fit, true[fit_rows], len(found), cfg, n_classes, rng)
    log.info("ensemble weights: %s", {n: round(float(w), 3) for n, w in zip(names, weights)})

    def test_votes(chunk: np.ndarray) -> list[Component]:
        return [vote_component(votes["test"], chunk, idx_of, cfg.vote_smoothing)] if cfg.dedup_blend else []
    test_chunks = _streamed(found, "test", ids["test"], None, cfg.chunk, test_votes)

    with atomic_dir(out_dir) as tmp:
        val_top1 = _apply(val_chunks(), weights, cfg, n_classes, ids["val"], tmp / "val_products.parquet", progress)
        test_top1 = _apply(test_chunks(), weights, cfg, n_classes, ids["test"], tmp / "test_products.parquet",
                           progress)
        test_labels, test_source = _override(cat_of[test_top1], ids["test"], votes["test"], cfg.override)
        pq.write_table(pa.table({"_id": ids["test"], "category_id": test_labels, "source": test_source},
                                schema=LABEL_SCHEMA), tmp / "test_labels.parquet")
    val_labels, val_source = _override(cat_of[val_top1], ids["val"], votes["val"], cfg.override)
    truth = val["category_id"].to_numpy()
    plain = np.zeros(len(true), dtype=np.int64)
    at = 0
    for part in val_chunks():
        cand, s = _scores(part, no_dedup, cfg.mean, n_classes)
        plain[at : at + len(cand)] = cand[np.arange(len(cand)), s.argmax(axis=1)]
        at += len(cand)
    per_comp = {n: hits / max(len(true), 1) for n, hits in zip(names, per_comp_hits)}
    overridden = val_source == "override"
    metrics = {
        "products": int(len(true)),
        "product_accuracy": float((val_labels == truth).mean()),
        "product_accuracy_before_override": float((cat_of[val_top1] == truth).mean()),
        "product_accuracy_cross_fitted": cv,
        "product_accuracy_without_dedup": float((plain == true).mean()),
        "dedup_gain": float((val_labels == truth).mean() - (plain == true).mean()),
        "override_gain": float((val_labels == truth).mean() - (cat_of[val_top1] == truth).mean()),
        "override_products": int(overridden.sum()),
        "override_precision": float((val_labels[overridden] == truth[overridden]).mean()) if overridden.any()
        else float("nan"),
        "test_override_products": int((test_source == "override").sum()),
        "mean": cfg.mean,
        "weights": dict(zip(names, [float(w) for w in weights])),
        "components": per_comp,
        # On the products the weights were fitted on (all of validation below fit_products), before the
        # override: the fitted mix is never below its best component there (every vertex is on the grid).
        "fitted_products": int(len(fit_rows)),
        "fitted_product_accuracy": float(fitted_acc),
        "fitted_best_component_accuracy": fitted_best,
    }
    best = max(per_comp.values())
    if metrics["product_accuracy_before_override"] + 1e-9 < best:
        log.warning("ensemble (%.4f) is below its best component (%.4f) on validation: weights were fitted on "
                    "a subsample; raise ensemble.fit_products", metrics["product_accuracy_before_override"], best)
    write_json(metrics_path, metrics)
    log.info("ensemble on validation: %s", json.dumps(metrics))
    return metrics


def _follows(path: Path, ids: np.ndarray, batch_rows: int = 1 << 18) -> bool:
    """Whether the rows of ``path`` for ``ids`` come in the order of ``ids``, once each (its ``_id``
    column only)."""
    at = 0
    for b in parquet_file(path).iter_batches(batch_size=batch_rows, columns=["_id"]):
        got = b.column(0).to_numpy()
        got = got[np.isin(got, ids)]
        if not np.array_equal(got, ids[at : at + len(got)]):
            return False
        at += len(got)
    return at == len(ids)


def _streamed(found: list[tuple[str, dict[str, Path]]], fold: str, ids: np.ndarray, keep: np.ndarray | None,
              chunk: int, votes_of: Callable[[np.ndarray], list[Component]]
              ) -> Callable[[], Iterator[list[Component]]]:
    """The components' ``fold`` files read in step with ``ids``, ``chunk`` products at a time (plus the
    vote component of each chunk), as often as asked: one chunk in memory. ``keep``: the ids to keep of
    files that also hold other products (validation files may), None = every row."""
    def chunks() -> Iterator[list[Component]]:
        streams = [ComponentStream(name, where[fold], keep, batch_rows=chunk) for name, where in found]
        for b in range(0, len(ids), chunk):
            part = ids[b : b + chunk]
            yield [s.take(part) for s in streams] + votes_of(part)
        for s in streams:
            s.finish()
    return chunks


def _val_source(found: list[tuple[str, dict[str, Path]]], ids: np.ndarray, votes: Votes, idx_of: pd.Series,
                cfg: EnsembleConfig) -> Callable[[], Iterator[list[Component]]]:
    """The validation components, ``cfg.chunk`` products at a time, as often as asked.

    Streamed from the files where their rows follow the split's order (as every model stage writes
    them: train.bson order, which is ``_id`` order in the Kaggle files): memory is one chunk, not the
    707 k validation products x K x components of the real data. A file in another order is read
    whole instead (logged), as before."""
    width = vote_width(votes, ids) if cfg.dedup_blend else 0

    def votes_of(chunk: np.ndarray) -> list[Component]:
        return [vote_component(votes, chunk, idx_of, cfg.vote_smoothing, width)] if cfg.dedup_blend else []

    unordered = [n for n, where in found if not _follows(where["val"], ids)]
    if not unordered:
        return _streamed(found, "val", ids, ids, cfg.chunk, votes_of)
    log.warning("ensemble: validation rows of %s do not follow split.parquet's order: read whole", unordered)
    comps = [read_component(name, where["val"], ids) for name, where in found]

    def held() -> Iterator[list[Component]]:
        for b in range(0, len(ids), cfg.chunk):
            rows = np.arange(b, min(b + cfg.chunk, len(ids)))
            yield _subset(comps, rows) + votes_of(ids[rows])
    return held


def _fit_subset(chunks: Iterator[list[Component]], fit_rows: np.ndarray, true: np.ndarray
                ) -> tuple[list[Component], list[int]]:
    """The components' rows of ``fit_rows`` (sorted), and each component's top-1 hits over all rows."""
    picked: list[list[Component]] = []
    hits: list[int] = []
    at = 0
    for part in chunks:
        n = len(part[0].idx)
        rows = fit_rows[(fit_rows >= at) & (fit_rows < at + n)] - at
        picked.append(_subset(part, rows))
        hits = [h + int((c.idx[:, 0] == true[at : at + n]).sum()) for h, c in
                zip(hits or [0] * len(part), part)]
        at += n
    if not picked:
        return [], []
    out = []
    for j in range(len(picked[0])):
        _, idx, prob = concat([(np.zeros(len(p[j].idx), np.int64), p[j].idx, p[j].prob) for p in picked])
        out.append(Component(picked[0][j].name, idx, prob))
    return out, hits


def _fit(fit: list[Component], true: np.ndarray, n_models: int, cfg: EnsembleConfig, n_classes: int,
         rng: np.random.Generator) -> tuple[np.ndarray, float, float, np.ndarray, float]:
    """Weights fitted on the ``fit`` products (the models first, then the vote component if any), their
    accuracy there, the two-fold cross-fitted accuracy, the weights of the models alone and the best
    component's accuracy there.

    ``fit`` is emptied as it is used: the fit then holds one [M, N, U] float32 source (the logs written
    over the probabilities) and half of it for the cross-fit, instead of the probabilities, their logs and
    a copy of both for the models-alone fit (traced peak at 50,000 products, 7 components of top-20:
    625 -> 484 MB)."""
    fitted_best = max(float((c.idx[:, 0] == true).mean()) for c in fit)
    cand, probs = candidate_probs(fit, n_classes)
    fit.clear()
    source = fit_source(probs, cfg.mean, in_place=True)
    weights, fitted_acc = grid_fit(source, cand, true, cfg.mean, cfg.weight_step)
    cv = _cross_fitted(source, cand, true, cfg, rng)
    no_dedup = np.zeros_like(weights)
    no_dedup[:n_models] = grid_fit(source[:n_models], cand, true, cfg.mean, cfg.weight_step)[0]  # a view
    return weights, fitted_acc, cv, no_dedup, fitted_best


def _cross_fitted(source: np.ndarray, cand: np.ndarray, true: np.ndarray, cfg: EnsembleConfig,
                  rng: np.random.Generator) -> float:
    """Two-fold accuracy: weights fitted on one half of the products, measured on the other
    (``source``: :func:`fit_source` of the products' candidate probabilities)."""
    half = rng.random(len(true)) < 0.5
    correct = 0
    for fit in (half, ~half):
        w, _ = grid_fit(source[:, fit], cand[fit], true[fit], cfg.mean, cfg.weight_step)
        held = np.flatnonzero(~fit)
        for b in range(0, len(held), cfg.chunk):  # scored a chunk at a time: no [M, N / 2, U] copies
            rows = held[b : b + cfg.chunk]
            p = source[:, rows]
            s = combine(p, p, w, cfg.mean)  # geometric reads log-probabilities, arithmetic probabilities
            correct += int((cand[rows][np.arange(len(rows)), s.argmax(axis=1)] == true[rows]).sum())
    return correct / max(len(true), 1)


def _apply(chunks: Iterator[list[Component]], weights: np.ndarray, cfg: EnsembleConfig, n_classes: int,
           ids: np.ndarray, out: Path, progress: bool) -> np.ndarray:
    """Top-K of the weighted mix of each chunk of components (products in ``ids`` order) into
    ``out``; returns the top-1 class per product."""
    top1 = np.zeros(len(ids), dtype=np.int64)
    at = 0
    with pq.ParquetWriter(out, PRODUCT_SCHEMA) as w:
        for part in tqdm(chunks, desc=f"ensemble {out.stem}", unit="chunk", total=-(-len(ids) // cfg.chunk),
                         disable=not progress):
            cand, s = _scores(part, weights, cfg.mean, n_classes)
            top_idx, top_prob = _topk_unique(cand, s, cfg.top_k)
            rows = slice(at, at + len(cand))
            top1[rows] = top_idx[:, 0]
            w.write_table(product_table(ids[rows], top_idx, top_prob))
            at += len(cand)
    return top1


def _topk_unique(cand: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the K best distinct candidates and their scores normalised over the candidates.

    Ties keep the candidates' order, as ``argmax`` does when the weights are fitted."""
    pos = np.broadcast_to(np.arange(cand.shape[1]), cand.shape)
    by_class = np.argsort(cand, axis=1, kind="stable")
    c = np.take_along_axis(cand, by_class, axis=1)
    p0 = np.take_along_axis(pos, by_class, axis=1)
    s = np.take_along_axis(score, by_class, axis=1).astype(np.float64)
    s[:, 1:][c[:, 1:] == c[:, :-1]] = -np.inf  # a class listed by several components counts once
    order = np.lexsort((p0, -s), axis=1)[:, :k]
    c, s = np.take_along_axis(c, order, axis=1), np.take_along_axis(s, order, axis=1)
    p = np.exp(s - s[:, :1])
    return c, p / p.sum(axis=1, keepdims=True)


def _votes(cfg: EnsembleConfig, val: pd.DataFrame, dedup: Path) -> dict[str, Votes]:
    """Validation votes from the training fold only; test votes from every training product."""
    return votes_from_dedup(dedup, val["_id"].to_numpy(), placeholder_min_categories=cfg.placeholder_min_categories,
                            min_votes=cfg.min_votes)


def _override(labels: np.ndarray, ids: np.ndarray, votes: Votes, enabled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels after the override, and per product ``model`` or ``override``."""
    sure = votes.label.reindex(ids).to_numpy() if enabled else np.full(len(ids), np.nan)
    take = ~pd.isna(sure)
    out = labels.copy()
    out[take] = sure[take].astype(np.int64)
    return out, np.where(take, "override", "model")
