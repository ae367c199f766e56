"""From-scratch benchmarks (no pretrained weights): the floors every transfer-learned backbone must clear.

- ``vanilla_cnn``: reference report 000's benchmark, three conv + pool blocks, global pooling, dropout;
- ``mlp``: reference report 003's dense NN benchmark, a small downscaled image flattened into two
  dense layers (300 and 100 units);
- ``lenet5``: reference report 003's LeNet-5 (two conv + average-pool blocks, dense 120 and 84),
  taking 3-channel pictures of any size through adaptive pooling.

Each returns (feature extractor, its blocks in input-to-output order, feature dim); the registry adds
the head sized to the number of categories.
"""
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


def mlp(side: int = 32, hidden: tuple[int, ...] = (300, 100)) -> tuple[nn.Module, list[nn.Module], int]:
    """Report 003's dense benchmark: the picture averaged down to ``side`` x ``side`` (any input size),
    flattened (3 x side x side values), then dense ReLU layers of ``hidden`` units."""
    blocks: list[nn.Module] = []
    d_in = 3 * side * side
    for d_out in hidden:
        blocks.append(nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(inplace=True)))
        d_in = d_out
    body = nn.Sequential(nn.AdaptiveAvgPool2d(side), nn.Flatten(), *blocks)
    return body, blocks, d_in


def lenet5(grid: int = 6) -> tuple[nn.Module, list[nn.Module], int]:
    """Report 003's LeNet-5 on 3-channel input: conv 3x3 (6) + avg-pool, conv 3x3 (16) + avg-pool,
    then adaptive average pooling to ``grid`` x ``grid`` (the 6 x 6 x 16 = 576 values the report's 32 px
    input gives, whatever the input size), dense 120 and 84."""
    blocks: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(inplace=True), nn.AvgPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 16, 3), nn.ReLU(inplace=True), nn.AvgPool2d(2)),
        nn.Sequential(nn.AdaptiveAvgPool2d(grid), nn.Flatten(), nn.Linear(16 * grid * grid, 120), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Linear(120, 84), nn.ReLU(inplace=True)),
    ]
    return nn.Sequential(*blocks), blocks, 84


#: name -> builder, every from-scratch architecture of the registry's ``vanilla`` family.
SCRATCH = {"vanilla_cnn": vanilla_cnn, "mlp": mlp, "lenet5": lenet5}
