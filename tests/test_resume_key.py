"""Checkpoints: resumed whatever the speed-only keys, moved aside (never deleted) when incompatible."""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscount.split import SplitConfig, assign_folds
from cdiscount.train import NOT_IN_RESUME_KEY, TrainConfig, TrainData, resume_key, train_backbone
from conftest import config

TINY = config(TrainConfig, arch="vanilla_cnn", pretrained="none", image_size=16, batch_size=64, head_epochs=1,
              full_epochs=0, workers=0, device="cpu")


def _data(labels: list[int]) -> TrainData:
    rows = np.arange(len(labels))
    return TrainData(None, rows, np.asarray(labels), rows[:1], np.asarray(labels[:1]), [10, 20])


def test_speed_only_keys_keep_the_key_anything_else_changes_it() -> None:
    base = resume_key(TINY, _data([0, 1, 1]))
    assert NOT_IN_RESUME_KEY == {"workers", "device", "compile", "channels_last"}
    for change in ({"workers": 7}, {"device": "cuda"}, {"compile": True}, {"channels_last": False}):
        assert resume_key(replace(TINY, **change), _data([0, 1, 1])) == base, change
    for change in ({"head_lr": 0.5}, {"seed": 3}, {"batch_size": 8}, {"amp": "bf16"}):
        assert resume_key(replace(TINY, **change), _data([0, 1, 1])) != base, change
    assert resume_key(TINY, _data([0, 1, 0])) != base  # other labels: another split or data


@pytest.fixture()
def split_path(tiny_interim: Path, tmp_path: Path) -> Path:
    p = tmp_path / "split.parquet"
    assign_folds(pd.read_parquet(tiny_interim / "train_products.parquet"),
                 **asdict(config(SplitConfig, val_fraction=0.2))).to_parquet(p)
    return p


def test_other_workers_resume_other_lr_moves_the_checkpoints_aside(tiny_interim: Path, split_path: Path,
                                                                   tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    out = tmp_path / "models"
    run = lambda cfg: train_backbone(cfg, tiny_interim, split_path, out / "backbone.pt", out / "checkpoints",  # noqa
                                     tmp_path / "live", progress=False)
    run(TINY)
    first = (out / "checkpoints" / "epoch-000.pt").read_bytes()
    run(replace(TINY, workers=1, compile=False))  # speed only: the finished training is resumed
    assert "resuming from epoch-000.pt (epoch 1 of 1 done)" in caplog.text
    assert (out / "checkpoints" / "epoch-000.pt").read_bytes() == first
    run(replace(TINY, head_lr=0.05))
    assert "differs: train.head_lr" in caplog.text and "moved to" in caplog.text
    aside = list((out / "checkpoints-set-aside").glob("*/epoch-000.pt"))
    assert len(aside) == 1 and aside[0].read_bytes() == first  # kept, byte for byte
    assert (out / "checkpoints" / "epoch-000.pt").read_bytes() != first  # a new training
