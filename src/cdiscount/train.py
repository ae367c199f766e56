"""Stage ``train_backbone``, training half: two-phase fine-tuning with resumable checkpoints.

Phase 1 trains only the new head with the pretrained body frozen (reference report 000 got
80 % of its final accuracy this way in a third of the time); phase 2 unfreezes the last
``unfreeze_blocks`` blocks (-1 = all) at a lower learning rate. ``image_sizes`` gives one
training picture size per epoch across both phases (progressive resizing, reference report 002);
validation, inference and the saved model use the last one. A checkpoint is written
atomically at the end of every epoch; re-running after a kill resumes from it and, on CPU
with the same seed, ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .atomic import atomic_path, clear_stale
from .data import ImageDataset, epoch_order
from .bson_io import open_store
from .images import normalise
from .models import build_backbone
from .params import Section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(Section):
    """The ``train`` section of params.yaml (its comments say what each key does)."""

    SECTION = "train"
    arch: str
    pretrained: Literal["imagenet", "none"]
    image_size: int
    # Progressive resizing (report 002): one training size per epoch, head then full phase, e.g.
    # [64, 96, 128]; empty = image_size for every epoch. The last size is the model's input size.
    image_sizes: list[int]
    batch_size: int
    head_epochs: int
    full_epochs: int
    head_lr: float
    full_lr: float
    unfreeze_blocks: int  # phase 2: last N blocks trainable; -1 = the whole body
    freeze_bn: bool  # phase 2 keeps batch-norm statistics (small batches, shifted domain)
    optimizer: Literal["adamw", "nadam", "sgd"]
    schedule: Literal["onecycle", "cosine", "constant"]
    weight_decay: float
    label_smoothing: float
    hflip: bool
    balance_power: float  # class-balanced sampling: 0 = natural, 1 = uniform over classes
    dropout: float
    features_dim: int  # > 0: a bottleneck of this width before the head (the cached features)
    cap_per_category: int  # > 0: at most this many training pictures per category (report 000: 300)
    workers: int
    amp: Literal["auto", "bf16", "fp16", "off"]
    channels_last: bool
    compile: bool
    device: str
    seed: int

    def check(self) -> None:
        self.require("arch", bool(self.arch), "an architecture name (`cdiscount archs` lists them)")
        self.require("image_size", 16 <= self.image_size <= 1024, "16 to 1024 pixels")
        self.require("batch_size", self.batch_size >= 1, "at least 1 picture per batch")
        self.require("head_epochs", self.head_epochs >= 0, ">= 0")
        self.require("full_epochs", self.full_epochs >= 0 and self.head_epochs + self.full_epochs >= 1,
                     ">= 0, with head_epochs + full_epochs >= 1 (nothing would be trained)")
        self.require("head_lr", self.head_lr > 0, "a learning rate > 0")
        self.require("full_lr", self.full_lr > 0, "a learning rate > 0")
        self.require("unfreeze_blocks", self.unfreeze_blocks >= -1, "-1 (the whole body) or a number of blocks")
        self.require("weight_decay", self.weight_decay >= 0, ">= 0")
        self.require("label_smoothing", 0 <= self.label_smoothing < 1, "0 <= value < 1")
        self.require("balance_power", 0 <= self.balance_power <= 1, "0 (natural frequencies) to 1 (uniform)")
        self.require("dropout", 0 <= self.dropout < 1, "0 <= value < 1")
        self.require("features_dim", self.features_dim >= 0, "0 (no bottleneck) or a width")
        self.require("cap_per_category", self.cap_per_category >= 0, "0 (no cap) or a count")
        self.require("workers", self.workers >= 0, "0 (load in the main process) or a number of processes")
        self.require("device", self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                     "auto, cpu, cuda or cuda:N")
        self.require("seed", self.seed >= 0, "an integer >= 0")
        n = self.head_epochs + self.full_epochs
        self.require("image_sizes", not self.image_sizes or (len(self.image_sizes) == n
                                                                and all(16 <= s <= 1024 for s in self.image_sizes)),
                     f"one size (16 to 1024) per epoch ({self.head_epochs} head + {self.full_epochs} full = {n}), "
                     "or [] for image_size throughout")

    def phases(self) -> list[str]:
        return ["head"] * self.head_epochs + ["full"] * self.full_epochs

    def epoch_image_size(self, epoch: int) -> int:
        """The training picture size of ``epoch`` (0-based)."""
        return int(self.image_sizes[epoch]) if self.image_sizes else self.image_size

    @property
    def final_image_size(self) -> int:
        """The size of the last epoch: validation, inference and the saved model's input size."""
        return int(self.image_sizes[-1]) if self.image_sizes else self.image_size


@dataclass
class TrainData:
    store: Any
    train_rows: np.ndarray
    train_labels: np.ndarray
    val_rows: np.ndarray
    val_labels: np.ndarray
    categories: list[int]  # category_id of each class index (taxonomy order)


def cap_rows(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Positions keeping at most ``cap`` per class (a seeded choice; all when ``cap <= 0``), in order."""
    if cap <= 0:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = pd.Series(labels[order]).groupby(labels[order]).cumcount().to_numpy()
    return np.sort(order[rank < cap])


def load_train_data(interim: Path, split_path: Path, cap_per_category: int, seed: int) -> TrainData:
    """Image rows and class indices of the training and validation folds."""
    tax = pd.read_parquet(interim / "taxonomy.parquet", columns=["category_id", "idx"])
    images = pd.read_parquet(interim / "train_images.parquet", columns=["_id", "category_id"])
    fold = pd.read_parquet(split_path, columns=["_id", "fold"]).set_index("_id")["fold"]
    f = images["_id"].map(fold).astype(str).to_numpy()
    idx = images["category_id"].map(tax.set_index("category_id")["idx"]).to_numpy(np.int64)
    rows = np.arange(len(images))
    train_rows, train_idx = rows[f == "train"], idx[f == "train"]
    keep = cap_rows(train_idx, cap_per_category, seed)
    return TrainData(open_store(interim, "train"), train_rows[keep], train_idx[keep], rows[f == "val"],
                     idx[f == "val"], tax.sort_values("idx")["category_id"].astype(int).tolist())


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _optimizer(cfg: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=cfg.weight_decay, decoupled_weight_decay=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer must be adamw, nadam or sgd, got {cfg.optimizer!r}")


#: Shortest one-cycle schedule: OneCycleLR divides by its warm-up length, which is zero at exactly
#: 4 steps (pct_start 0.25), e.g. 88 pictures at batch size 64 over two epochs. Shorter phases run
#: the first steps of an 8-step cycle (tiny data: a handful of products must train with defaults).
MIN_ONECYCLE_STEPS = 8


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, lr: float, steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, MIN_ONECYCLE_STEPS),
                                                   pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"train.schedule must be onecycle, cosine or constant, got {cfg.schedule!r}")


def _loader(ds: ImageDataset, order: np.ndarray, cfg: TrainConfig, device: torch.device) -> DataLoader:
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=order.tolist(), num_workers=cfg.workers,
                      pin_memory=device.type == "cuda", drop_last=False)


def _wrap(model: nn.Module, cfg: TrainConfig, ctx: distributed.Context) -> nn.Module:
    net = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                  else None)
    return torch.compile(net) if cfg.compile else net


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("epoch-*.pt"))


#: Keys that change how fast training runs, never what it computes: a checkpoint made with other
#: values of these is resumed, not discarded.
NOT_IN_RESUME_KEY = frozenset({"workers", "device", "compile", "channels_last"})


def resume_key(cfg: TrainConfig, data: TrainData) -> str:
    """What a checkpoint must have been made with to be resumed: every train key that can change
    the weights, and the data (training and validation rows, labels, category list)."""
    fingerprint = hashlib.md5()
    for a in (data.train_rows, data.train_labels, data.val_rows, np.asarray(data.categories)):
        fingerprint.update(np.ascontiguousarray(a).tobytes())
    kept = {k: v for k, v in asdict(cfg).items() if k not in NOT_IN_RESUME_KEY}
    return json.dumps({**kept, "data": fingerprint.hexdigest()}, sort_keys=True)


def _key_difference(old: str, new: str) -> str:
    """The keys two resume keys disagree on, for the log ("data" = another split or category list)."""
    try:
        a, b = json.loads(old), json.loads(new)
    except (TypeError, ValueError):
        return "an older checkpoint format"
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return "differs: " + ", ".join(f"train.{k}" if k != "data" else "the data" for k in diff) if diff else "?"


def _move_aside(ckpt_dir: Path, ckpts: list[Path]) -> Path:
    """Move incompatible checkpoints out of the way (never delete days of training): into a
    timestamped sibling folder outside the DVC output."""
    aside = ckpt_dir.with_name(f"{ckpt_dir.name}-set-aside") / time.strftime("%Y%m%d-%H%M%S")
    aside.mkdir(parents=True, exist_ok=True)
    for p in ckpts:
        os.replace(p, aside / p.name)
    return aside


def train_backbone(cfg: TrainConfig, interim: Path, split_path: Path, model_out: Path, ckpt_dir: Path,
                   live_dir: Path, *, progress: bool) -> dict[str, Any]:
    """Train (or resume training) and write ``model_out``; returns the last epoch's metrics."""
    ctx = distributed.setup(cfg.device)
    if ctx.is_main:  # a killed run's checkpoint temps: inside ckpt_dir, below the stage's path constants
        for stale in clear_stale([ckpt_dir / "epoch-000.pt"]):  # (the runner clears beside those only)
            log.warning("removed %s, left by a killed run", stale)
    torch.manual_seed(cfg.seed)
    data = load_train_data(interim, split_path, cfg.cap_per_category, cfg.seed)
    model = build_backbone(cfg.arch, len(data.categories), cfg.pretrained, cfg.dropout,
                           cfg.features_dim).to(ctx.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    phases = cfg.phases()
    config_key = resume_key(cfg, data)
    start, state = 0, None
    ckpts = _checkpoints(ckpt_dir)
    if ckpts:
        state = torch.load(ckpts[-1], map_location=ctx.device, weights_only=False)
        if state["config"] != config_key:
            state = None
            if ctx.is_main:
                aside = _move_aside(ckpt_dir, ckpts)
                log.warning("checkpoints in %s were made with other train params or data (%s): moved to %s, "
                            "starting over", ckpt_dir, _key_difference(torch.load(aside / ckpts[-1].name,
                                                                                  weights_only=False)["config"],
                                                                       config_key), aside)
            distributed.barrier()
        else:
            start = state["epoch"] + 1
            model.load_state_dict(state["model"])
            torch.set_rng_state(state["torch_rng"])
            log.info("resuming from %s (epoch %d of %d done)", ckpts[-1].name, start, len(phases))
    live = None
    if ctx.is_main:
        from dvclive import Live

        live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None, report=None)
        live.step = start  # one step per epoch, whatever DVCLive inferred from a killed run
    train_ds = ImageDataset(data.store, data.train_rows, data.train_labels, cfg.final_image_size,
                            hflip=cfg.hflip, seed=cfg.seed)  # resized per epoch below
    val_ds = ImageDataset(data.store, data.val_rows, data.val_labels, cfg.final_image_size)
    net: nn.Module = model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and ctx.device.type == "cuda")
    opt = sched = None
    metrics: dict[str, Any] = {}
    steps_per_epoch = -(-len(epoch_order(data.train_labels, 0, cfg.seed, cfg.balance_power, ctx.rank, ctx.world))
                        // cfg.batch_size)
    for epoch in range(start, len(phases)):
        phase = phases[epoch]
        if opt is None or phases[epoch - 1] != phase:
            model.freeze_body(0 if phase == "head" else cfg.unfreeze_blocks)
            net = _wrap(model, cfg, ctx)  # DDP registers the parameters trainable in this phase
            lr = cfg.head_lr if phase == "head" else cfg.full_lr
            opt = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad], lr)
            sched = _scheduler(cfg, opt, lr, steps_per_epoch * phases.count(phase))
            if state is not None and state["phase"] == phase and epoch == start:
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
        net.train()
        if phase == "head":
            model.body.eval()  # frozen body: keep its batch-norm statistics
        elif cfg.freeze_bn:
            for m in model.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        train_ds.epoch = epoch
        train_ds.image_size = cfg.epoch_image_size(epoch)  # set before the epoch's loader copies it to workers
        order = epoch_order(data.train_labels, epoch, cfg.seed, cfg.balance_power, ctx.rank, ctx.world)
        t0, seen, loss_sum, last_lr = time.perf_counter(), 0, 0.0, opt.param_groups[0]["lr"]
        bar = tqdm(_loader(train_ds, order, cfg, ctx.device), desc=f"epoch {epoch + 1}/{len(phases)} ({phase})",
                   unit="batch", disable=not (progress and ctx.is_main))
        for x, y, _ in bar:
            x = normalise(x.to(ctx.device, non_blocking=True), model.norm.mean, model.norm.std)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, cfg.amp):
                loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            last_lr = opt.param_groups[0]["lr"]  # the rate this step used (logged below)
            sched.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        seconds = time.perf_counter() - t0
        val_acc = evaluate(model, val_ds, cfg, ctx.device) if len(val_ds) else float("nan")
        metrics = {"epoch": epoch + 1, "phase": phase, "train_loss": loss_sum / max(seen, 1),
                   "val_image_accuracy": val_acc, "lr": last_lr,
                   "train_images_per_s": seen * ctx.world / seconds}
        if ctx.is_main:
            for k, v in metrics.items():
                if k != "phase":
                    live.log_metric(f"train/{k}" if k != "epoch" else "epoch", v, plot=k != "epoch")
            live.next_step()
            log.info("epoch %d (%s): loss %.4f, val image accuracy %.4f, %.0f images/s", epoch + 1, phase,
                     metrics["train_loss"], val_acc, metrics["train_images_per_s"])
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_dir / f"epoch-{epoch:03d}.pt") as tmp:
                torch.save({"epoch": epoch, "phase": phase, "config": config_key, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state()}, tmp)
        distributed.barrier()
    if ctx.is_main:
        save_model(model, cfg, data.categories, model_out)
        if live is not None:
            live.end()
    return metrics


@torch.no_grad()
def evaluate(model: nn.Module, ds: ImageDataset, cfg: TrainConfig, device: torch.device) -> float:
    """Image-level accuracy on ``ds`` (validation during training)."""
    model.eval()
    correct = 0
    for x, y, _ in _loader(ds, np.arange(len(ds)), cfg, device):
        x = normalise(x.to(device), model.norm.mean, model.norm.std)
        with autocast(device, cfg.amp):
            correct += int((model(x).argmax(1).cpu() == y).sum())
    model.train()
    return correct / len(ds)


def save_model(model, cfg: TrainConfig, categories: list[int], path: Path) -> None:
    """Everything needed to use the model alone: arch, weights, categories, input size, normalisation."""
    with atomic_path(path) as tmp:
        torch.save({
            "arch": cfg.arch, "n_classes": len(categories), "categories": categories,
            "image_size": cfg.final_image_size, "mean": list(model.norm.mean), "std": list(model.norm.std),
            "feature_dim": model.feature_dim, "dropout": cfg.dropout, "config": asdict(cfg),
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        }, tmp)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a saved backbone (no download: the weights are in the file)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = build_backbone(blob["arch"], blob["n_classes"], "none", blob["dropout"],
                           blob["config"].get("features_dim", 0))
    model.load_state_dict(blob["state_dict"])
    from .models.registry import Normalisation

    model.norm = Normalisation(tuple(blob["mean"]), tuple(blob["std"]))
    return model.to(device).eval(), blob
