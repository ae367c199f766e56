"""Stage ``specific@<slot>``: one expert per group, trained on cached features (no CNN).

``groups.json`` is data (it depends on the backbone's errors) while DVC's ``foreach`` needs
names known in advance, so params list *slots*: slot ``i`` trains the expert of the i-th group
(groups ordered by size, then name). A slot beyond the last group writes an empty marker; a
group beyond the last slot gets no expert (logged): add slots to ``specific.slots``.

Experts predict the validation and test products whose flat probability mass on the group is
at least ``specific.min_mass`` (the others cannot move under soft routing); a product's score
is the mean of its pictures' log-probabilities, as everywhere else.
"""
from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_dir
from .errors import ConfigError
from .experts import ExpertConfig, fit_expert
from .features import gather, product_spans, read_features
from .params import build
from .topk import read_topk

log = logging.getLogger(__name__)


def ordered_groups(groups: dict[str, list[int]]) -> list[str]:
    """Group names in slot order: largest first, then by name."""
    return sorted(groups, key=lambda g: (-len(groups[g]), g))


def product_scores(expert, feats: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Products (pictures contiguous) and their mean-log-probability expert distributions."""
    logp = np.log(np.clip(expert.predict_proba(feats), 1e-12, None))
    ids, start, count = product_spans(image_ids)
    mean = np.add.reduceat(logp, start, axis=0) / count[:, None]
    probs = np.exp(mean - mean.max(axis=1, keepdims=True))
    return ids, probs / probs.sum(axis=1, keepdims=True)


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


def run_specific(slot: str, slots: list[str], cfg: ExpertConfig, *, groups_path: Path, taxonomy: Path,
                 train_images: Path, split_path: Path, features: Path, flat: Path, out: Path) -> dict[str, Any]:
    """Train the expert of ``slot``'s group into ``out`` (an empty marker when there are fewer groups)."""
    groups = json.loads(groups_path.read_text())
    names = ordered_groups(groups)
    i = slots.index(slot)
    if slot == slots[-1] and len(names) > len(slots):
        log.warning("%d groups but %d slots: groups %s get no expert (add names to specific.slots)",
                    len(names), len(slots), names[len(slots):])
    with atomic_dir(out) as tmp:
        if i >= len(names):
            (tmp / "meta.json").write_text(json.dumps({"slot": slot, "group": None}) + "\n")
            log.info("slot %s: no group (only %d groups)", slot, len(names))
            return {}
        meta = _train_slot(names[i], groups[names[i]], cfg, tmp, taxonomy=taxonomy, train_images=train_images,
                           split_path=split_path, features=features, flat=flat)
        meta["slot"] = slot
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log.info("slot %s: %s", slot, meta)
    return meta


def _train_slot(group: str, category_ids: list[int], cfg: ExpertConfig, out: Path, *, taxonomy: Path,
                train_images: Path, split_path: Path, features: Path, flat: Path) -> dict:
    tax = pd.read_parquet(taxonomy)
    idx_of = tax.set_index("category_id")["idx"]
    classes = idx_of.loc[category_ids].to_numpy()  # global class indices, in the group's order
    local_of = {int(c): j for j, c in enumerate(category_ids)}
    images = pd.read_parquet(train_images, columns=["_id", "category_id"])
    fold = images["_id"].map(pd.read_parquet(split_path, columns=["_id", "fold"]).set_index("_id")["fold"])
    fold = fold.astype(str).to_numpy()
    index, shards = read_features(features / "train")
    in_group = images["category_id"].isin(category_ids).to_numpy()
    train = np.flatnonzero(in_group & (fold == "train"))
    y = images["category_id"].to_numpy()[train]
    expert = fit_expert(gather(index, shards, train), np.array([local_of[int(c)] for c in y]), len(category_ids), cfg)
    with open(out / "expert.pkl", "wb") as f:
        pickle.dump({"group": group, "category_ids": category_ids, "expert": expert}, f)
    saved: dict[str, np.ndarray] = {"classes": classes}
    accuracy = {}
    for split, rows_of in (("val", fold == "val"), ("test", None)):
        source = "train" if split == "val" else "test"
        pid, top_idx, top_prob = read_topk(flat / f"{source}_products.parquet",
                                           images["_id"][rows_of].unique() if split == "val" else None)
        mass = np.where(np.isin(top_idx, classes), top_prob, 0.0).sum(axis=1)  # flat probability on the group
        wanted = pid[mass >= cfg.min_mass]
        if source == "train":
            idx_frame, feat_shards, img_ids = index, shards, images["_id"].to_numpy()
        else:
            idx_frame, feat_shards = read_features(features / "test")
            img_ids = idx_frame["_id"].to_numpy()
        pos = np.flatnonzero(np.isin(img_ids, wanted))
        ids, probs = product_scores(expert, gather(idx_frame, feat_shards, pos), img_ids[pos]) if len(pos) \
            else (np.zeros(0, np.int64), np.zeros((0, len(classes))))
        saved[f"{split}_ids"], saved[f"{split}_probs"] = ids, probs.astype(np.float32)
        if split == "val":
            truth = images.drop_duplicates("_id").set_index("_id")["category_id"]
            true = truth.loc[ids].to_numpy()
            inside = np.isin(true, category_ids)
            pred = np.asarray(category_ids)[probs.argmax(axis=1)] if len(ids) else np.zeros(0)
            accuracy = {"val_products_in_group": int(inside.sum()),
                        "expert_accuracy_in_group": float((pred[inside] == true[inside]).mean()) if inside.any()
                        else float("nan")}
    np.savez(out / "preds.npz", **saved)
    return {"group": group, "categories": len(category_ids), "model": expert.kind, "train_pictures": int(len(train)),
            **accuracy}
