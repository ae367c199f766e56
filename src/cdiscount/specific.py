"""Stage ``specific@<slot>``: one expert per group, trained on cached features (no CNN).

``groups.json`` is data (it depends on the backbone's errors) while DVC's ``foreach`` needs
names known in advance, so params list *slots* and the groups are dealt to them like cards:
groups ordered by size (then name), slot ``i`` of ``S`` trains groups ``i, i + S, i + 2S, ...``.
Every group gets its expert whatever the number of groups (the 49 level-1 groups of the real
taxonomy on 8 slots: 6 or 7 each); a slot's ``per_slot`` overrides apply to all of its groups,
and adding slots spreads the groups (and the DVC caching) thinner.

Memory does not grow with the data: an expert trains on at most ``cap_per_category`` pictures
per category (0 = all; the pooled "band: low" group of the real data holds thousands of
categories and millions of pictures, which would be the flat model again at the flat model's
cost), and predicts products in batches (:func:`batch_products`: fewer for larger groups),
streaming the flat model's top-K and writing its own top-K (``specific.top_k`` classes of its group
per product) instead of a dense [products x group classes] matrix.

Experts predict the validation and test products whose flat probability mass on the group is
at least ``specific.min_mass`` (the others cannot move under soft routing); a product's score
is the mean of its pictures' log-probabilities, as everywhere else.
"""
from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .atomic import atomic_dir
from .errors import ConfigError
from .experts import Expert, ExpertConfig, fit_expert
from .features import gather, product_spans, read_features
from .params import build
from .topk import iter_topk, product_table, topk, writer

log = logging.getLogger(__name__)

#: Products scored per step, at most: their pictures' features (~1.75 x 1,280 floats each) stay ~150 MB.
BATCH_PRODUCTS = 16_384
#: Expert probabilities held per step (pictures x group classes): a 5,000-class band scores ~4,000 products a step.
BATCH_CELLS = 20_000_000


def batch_products(n_classes: int) -> int:
    """Products per scoring step for an expert of ``n_classes``: its [pictures, classes] float64
    probabilities (and their logs) stay a few hundred MB whatever the group's size."""
    return int(np.clip(BATCH_CELLS // max(n_classes, 1), 256, BATCH_PRODUCTS))


def ordered_groups(groups: dict[str, list[int]]) -> list[str]:
    """Group names in dealing order: largest first, then by name."""
    return sorted(groups, key=lambda g: (-len(groups[g]), g))


def slot_groups(names: list[str], slots: list[str], slot: str) -> list[tuple[int, str]]:
    """``(rank, name)`` of the groups ``slot`` trains: ranks ``i, i + S, ...`` of the ordered names."""
    i = slots.index(slot)
    return [(r, names[r]) for r in range(i, len(names), len(slots))]


def product_scores(expert: Expert, feats: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Products (pictures contiguous) and their mean-log-probability expert distributions."""
    logp = np.log(np.clip(expert.predict_proba(feats), 1e-12, None))
    ids, start, count = product_spans(image_ids)
    mean = np.add.reduceat(logp, start, axis=0) / count[:, None]
    probs = np.exp(mean - mean.max(axis=1, keepdims=True))
    return ids, probs / probs.sum(axis=1, keepdims=True)


def capped(rows: np.ndarray, labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of ``rows`` per label (0 = all), a seeded random choice, in ``rows``' order."""
    if cap <= 0 or not len(rows):
        return rows
    shuffled = np.random.default_rng(seed).permutation(len(rows))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    sorted_labels = labels[by_label]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    keep = by_label[np.arange(len(by_label)) - first < cap]
    return rows[np.sort(keep)]


def slot_config(params: dict[str, Any], slot: str) -> tuple[list[str], ExpertConfig]:
    """``specific.slots`` and the expert config of ``slot``: the common keys with the slot's
    ``per_slot`` overrides on top (errors name ``specific.per_slot.<slot>.key`` for an override)."""
    if "specific" not in params or not isinstance(params["specific"], dict):
        raise ConfigError(f"specific: section missing or not a mapping (got {params.get('specific')!r})")
    common = dict(params["specific"])
    slots, per_slot = common.pop("slots", None), common.pop("per_slot", None)
    if not isinstance(slots, list) or not slots or not all(isinstance(s, str) for s in slots) \
            or len(set(slots)) != len(slots):
        raise ConfigError(f"specific.slots = {slots!r}: expected a list of distinct slot names, e.g. [g0, g1]")
    if not isinstance(per_slot, dict):
        raise ConfigError(f"specific.per_slot = {per_slot!r}: expected a mapping of slot -> overrides")
    if set(per_slot) - set(slots) and slot == slots[0]:  # said once, not by every slot's stage
        log.warning("specific.per_slot has overrides for %s, not in specific.slots %s: they are not used",
                    sorted(set(per_slot) - set(slots)), slots)
    if slot not in slots:
        raise ConfigError(f"specific: unknown slot {slot!r} (specific.slots = {slots})")
    base = build(ExpertConfig, common)
    overrides = per_slot.get(slot) or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"specific.per_slot.{slot} = {overrides!r}: expected a mapping of overrides")
    return slots, build(ExpertConfig, {**common, **overrides}, f"specific.per_slot.{slot}") if overrides else base


class _TrainSet:
    """What every group of a slot reads: the train pictures' labels and folds, the features."""

    def __init__(self, taxonomy: Path, train_images: Path, split_path: Path, features: Path) -> None:
        self.idx_of = pd.read_parquet(taxonomy).set_index("category_id")["idx"]
        images = pd.read_parquet(train_images, columns=["_id", "category_id"])
        split = pd.read_parquet(split_path, columns=["_id", "fold", "category_id"])
        self.image_ids = images["_id"].to_numpy()
        self.image_category = images["category_id"].to_numpy()
        self.is_train = images["_id"].isin(split.loc[split["fold"] == "train", "_id"]).to_numpy()
        self.val = split.loc[split["fold"] == "val", ["_id", "category_id"]]
        self.val_truth = self.val.set_index("_id")["category_id"]
        self.features = features
        self.index, self.shards = read_features(features / "train")
        self.sources = {"train": (self.index, self.shards, self._spans(self.index))}

    @staticmethod
    def _spans(index: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        ids, start, count = product_spans(index["_id"].to_numpy())
        return pd.Index(ids), start, count

    def feature_source(self, source: str) -> tuple[pd.DataFrame, list[np.ndarray], tuple]:
        """The feature index, shards and product spans of ``train`` or ``test`` (opened once)."""
        if source not in self.sources:
            index, shards = read_features(self.features / source)
            self.sources[source] = (index, shards, self._spans(index))
        return self.sources[source]


def run_specific(slot: str, slots: list[str], cfg: ExpertConfig, *, groups_path: Path, taxonomy: Path,
                 train_images: Path, split_path: Path, features: Path, flat: Path, out: Path,
                 progress: bool = False) -> dict[str, Any]:
    """Train the experts of ``slot``'s groups into ``out/<rank>/`` (none when there are fewer groups)."""
    groups = json.loads(groups_path.read_text())
    mine = slot_groups(ordered_groups(groups), slots, slot)
    metas = []
    with atomic_dir(out) as tmp:
        data = _TrainSet(taxonomy, train_images, split_path, features) if mine else None
        for rank, name in mine:
            (tmp / f"{rank:03d}").mkdir()
            meta = _train_group(name, groups[name], cfg, tmp / f"{rank:03d}", data, flat=flat, progress=progress)
            meta["rank"] = rank
            (tmp / f"{rank:03d}" / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            log.info("slot %s, group %d: %s", slot, rank, meta)
            metas.append(meta)
        (tmp / "meta.json").write_text(json.dumps({"slot": slot, "groups": metas}, indent=2, ensure_ascii=False)
                                       + "\n")
    if not mine:
        log.info("slot %s: no group (only %d groups for %d slots)", slot, len(groups), len(slots))
    return {"slot": slot, "groups": metas}


def _train_group(group: str, category_ids: list[int], cfg: ExpertConfig, out: Path, data: _TrainSet, *,
                 flat: Path, progress: bool) -> dict[str, Any]:
    classes = data.idx_of.loc[category_ids].to_numpy()  # global class indices, in the group's order
    local = pd.Series(np.arange(len(category_ids)), index=category_ids)
    in_group = np.isin(data.image_category, category_ids)
    every = np.flatnonzero(in_group & data.is_train)
    train = capped(every, data.image_category[every], cfg.cap_per_category, cfg.seed)
    y = local.loc[data.image_category[train]].to_numpy()
    expert = fit_expert(gather(data.index, data.shards, train), y, len(category_ids), cfg)
    with open(out / "expert.pkl", "wb") as f:
        pickle.dump({"group": group, "category_ids": category_ids, "expert": expert}, f)
    inside = correct = 0
    scored = {}
    for split, source, ids in (("val", "train", data.val["_id"].to_numpy()), ("test", "test", None)):
        index, shards, (pids, start, count) = data.feature_source(source)
        n = 0
        with writer(out / f"{split}_products.parquet") as w:
            for bid, probs in _score(expert, flat / f"{source}_products.parquet", ids, classes, cfg.min_mass,
                                     index, shards, pids, start, count, desc=f"{group} {split}", progress=progress):
                idx, prob = topk(torch.from_numpy(probs), cfg.top_k)
                w.write_table(product_table(bid, classes[idx], prob))
                n += len(bid)
                if split == "val":
                    true = data.val_truth.loc[bid].to_numpy()
                    hit = np.isin(true, category_ids)
                    inside += int(hit.sum())
                    correct += int((np.asarray(category_ids)[idx[:, 0]] == true)[hit].sum())
        scored[f"{split}_products_scored"] = n
    return {"group": group, "categories": len(category_ids), "model": expert.kind,
            "train_pictures": int(len(train)), "train_pictures_available": int(len(every)), **scored,
            "val_products_in_group": inside,
            "expert_accuracy_in_group": correct / inside if inside else float("nan"),
            "category_ids": [int(c) for c in category_ids], "classes": classes.astype(int).tolist()}


def _score(expert: Expert, flat_file: Path, ids: np.ndarray | None, classes: np.ndarray, min_mass: float,
           index: pd.DataFrame, shards: list[np.ndarray], pids: pd.Index, start: np.ndarray, count: np.ndarray,
           *, desc: str, progress: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(product ids, [n, group classes] distributions)`` of the products of ``flat_file`` (only
    ``ids`` if given) with at least ``min_mass`` flat probability on ``classes``, in file order."""
    batches = iter_topk(flat_file, ids, batch_rows=batch_products(len(classes)))
    for bid, top_idx, top_prob in tqdm(batches, desc=desc, unit="batch", disable=not progress):
        mass = np.where(np.isin(top_idx, classes), top_prob, 0.0).sum(axis=1)  # flat probability on the group
        wanted = bid[mass >= min_mass]
        if not len(wanted):
            continue
        pos = pids.get_indexer(wanted)
        if (pos < 0).any():
            raise ValueError(f"{flat_file}: product _id {int(wanted[pos < 0][0])} has no cached features")
        n = count[pos]
        rows = np.repeat(start[pos] - np.cumsum(n) + n, n) + np.arange(n.sum())  # each product's picture rows
        got, probs = product_scores(expert, gather(index, shards, rows), index["_id"].to_numpy()[rows])
        yield got, probs
