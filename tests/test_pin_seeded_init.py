"""A seeded backbone starts from the same weights whatever was imported before (a known bug, pinned)."""
from __future__ import annotations

import subprocess
import sys

import pytest

#: In a fresh process: two seeded builds, the first one also importing the architecture registry's packages.
CODE = """
import torch
from cdiscount.models import build_backbone

def initial_head():
    torch.manual_seed(0)
    return build_backbone("vanilla_cnn", 5, "none", 0.2, 0).state_dict()["head.weight"]

print(torch.equal(initial_head(), initial_head()))
"""


#: The library bug, until fixed (then the test passes).
BUG = ("build_backbone -> resolve -> available_architectures (src/cdiscount/models/registry.py) imports "
       "pretrainedmodels, whose import draws from torch's global RNG; train_backbone seeds before building, so the "
       "first model built in a process starts from other weights than any later one with the same seed")


def test_same_seed_same_initial_weights_in_one_process() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if proc.stdout.strip() == "False":
        pytest.xfail(BUG)
    assert proc.stdout.strip() == "True"
