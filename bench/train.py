"""Training / inference throughput benchmark (``make bench`` / ``python bench/train.py``).

Prints, measured in one run on the same batches:
  * training images/s with the real input pipeline (DataLoader workers reading JPEGs from the
    BSON through the decode index, decoding, resizing);
  * training images/s of the same model fed pre-decoded in-memory tensors;
  * their ratio (target >= 0.9: the loader is never the bottleneck);
  * inference images/s with the real loader.
On a GPU: ``python bench/train.py --arch resnet50 --image-size 180 --device cuda --amp bf16``.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from cdiscount.data import ImageDataset
from cdiscount.bson_io import open_store
from cdiscount.decode import DecodeConfig, run_decode
from cdiscount.params import load_config, load_params
from cdiscount.images import normalise
from cdiscount.models import build_backbone
from cdiscount.sample import SampleConfig, generate_sample
from cdiscount.train import autocast

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "train"


def sample_interim() -> Path:
    """A small decoded sample of our own (built once), so the benchmark needs nothing else."""
    interim = CACHE / "interim"
    if not (interim / "train_images.parquet").exists():
        params = load_params(ROOT / "params.yaml")
        generate_sample(CACHE / "raw", replace(load_config(SampleConfig, params), train_products=800, test_products=10,
                                               min_products_per_category=5), progress=False)
        run_decode(CACHE / "raw", interim, CACHE / "metrics", load_config(DecodeConfig, params), progress=False)
    return interim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    device = torch.device(args.device)
    interim = sample_interim()
    store = open_store(interim, "train")
    n = args.batch_size * (args.batches + 2)
    rows = np.arange(n) % len(store)
    labels = pd.read_parquet(interim / "train_images.parquet")["category_id"].factorize()[0][rows]
    ds = ImageDataset(store, rows, labels, args.image_size, hflip=True)
    model = build_backbone(args.arch, int(labels.max()) + 1, "none").to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x = normalise(x.to(device, non_blocking=True), model.norm.mean, model.norm.std)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, args.amp):
            loss = loss_fn(model(x), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(batches, train: bool = True) -> float:
        it = iter(batches)
        for _ in range(2):  # warm-up (worker start, allocator, kernels)
            x, y, _ = next(it)
            step(x, y) if train else model(normalise(x.to(device), model.norm.mean, model.norm.std))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t, seen = time.perf_counter(), 0
        for x, y, _ in it:
            if train:
                step(x, y)
            else:
                with torch.no_grad(), autocast(device, args.amp):
                    model(normalise(x.to(device), model.norm.mean, model.norm.std))
            seen += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return seen / (time.perf_counter() - t)

    loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda")
    in_memory = list(DataLoader(ds, batch_size=args.batch_size, num_workers=0))  # decoded once, untimed
    model.train()
    real = timed(loader)
    memory = timed(in_memory)
    model.eval()
    infer = timed(loader, train=False)
    print(f"train bench: {args.arch} at {args.image_size} px, batch {args.batch_size}, {device}, "
          f"amp {args.amp}, channels_last {args.channels_last}, {args.workers} loader workers")
    print(f"  training, real loader      : {real:8.1f} images/s")
    print(f"  training, in-memory tensors: {memory:8.1f} images/s")
    print(f"  ratio real / in-memory     : {real / memory:8.2f}   (target >= 0.9)")
    print(f"  inference, real loader     : {infer:8.1f} images/s")


if __name__ == "__main__":
    main()
