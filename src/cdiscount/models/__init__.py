"""Backbones behind one registry: ``build_backbone(arch, n_classes, pretrained)``."""
from .registry import Backbone, available_architectures, build_backbone

__all__ = ["Backbone", "available_architectures", "build_backbone"]
