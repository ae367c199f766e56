"""Backbones behind one registry: ``build_backbone(arch, n_classes, pretrained)``."""
from .registry import Backbone, available_architectures, build_backbone, pretrained_weights_cached, resolve

__all__ = ["Backbone", "available_architectures", "build_backbone", "pretrained_weights_cached", "resolve"]
