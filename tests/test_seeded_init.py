"""A seeded backbone starts from the same weights whatever was imported before."""
from __future__ import annotations

import subprocess
import sys


#: In a fresh process: two seeded builds, the first one also importing the architecture registry's packages.
CODE = """
import torch
from cdiscount.models import build_backbone

def initial_head():
    torch.manual_seed(0)
    return build_backbone("vanilla_cnn", 5, "none", 0.2, 0).state_dict()["head.weight"]

print(torch.equal(initial_head(), initial_head()))
"""



def test_same_seed_same_initial_weights_in_one_process() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # False before the fix: importing pretrainedmodels (first build only) drew from torch's RNG after the seed
    assert proc.stdout.strip() == "True"
