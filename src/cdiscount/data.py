"""Datasets and samplers over the decode stage's image index (random access into the BSON)."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from .bson_io import ImageStore
from .images import decode_image, resize


class ImageDataset(Dataset):
    """Pictures ``rows`` of an :class:`ImageStore` as (uint8 [3, S, S], label, row) triples.

    Augmentation (horizontal flip) is drawn from ``(seed, epoch, row)``, not from a global
    RNG, so an epoch is the same whatever the worker count and a resumed run repeats it exactly.
    """

    def __init__(self, store: ImageStore, rows: np.ndarray, labels: np.ndarray | None, image_size: int,
                 *, hflip: bool = False, seed: int = 0) -> None:
        self.store, self.rows, self.image_size = store, np.asarray(rows), image_size
        self.labels = np.full(len(self.rows), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.hflip, self.seed, self.epoch = hflip, seed, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.rows[i])
        img = resize(decode_image(self.store.read_row(row)), self.image_size)
        if self.hflip and random.Random(hash((self.seed, self.epoch, row))).random() < 0.5:
            img = img.flip(-1)
        return img, int(self.labels[i]), row


def epoch_order(labels: np.ndarray, epoch: int, seed: int, balance_power: float = 0.0,
                rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices for one epoch: a shuffle, or class-balanced draws with replacement.

    ``balance_power`` p draws each sample with weight ``count(class) ** -p``: 0 = natural
    frequencies (a plain shuffle), 1 = every class equally often. Deterministic in
    ``(seed, epoch)``; rank ``r`` of ``world`` takes every world-th index (DDP).
    """
    g = np.random.default_rng([seed, epoch])
    n = len(labels)
    if balance_power > 0:
        counts = np.bincount(labels)
        w = counts[labels].astype(np.float64) ** -balance_power
        order = g.choice(n, size=n, replace=True, p=w / w.sum())
    else:
        order = g.permutation(n)
    return order[rank::world]
