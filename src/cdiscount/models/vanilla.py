"""The vanilla CNN benchmark of reference report 000: three conv + pool blocks, global pooling,
dropout, then the classifier. A floor that every transfer-learned backbone must clear."""
from __future__ import annotations

from torch import nn


def vanilla_cnn(width: int = 32) -> tuple[nn.Module, list[nn.Module], int]:
    """Return (feature extractor, its blocks in input-to-output order, feature dim)."""
    blocks = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width):
        blocks.append(nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ))
        c_in = c_out
    body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3))
    return body, blocks, c_in
