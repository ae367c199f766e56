"""DVC stage ``train_backbone``: fine-tune the CNN, then features and top-K predictions for every picture.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
Multi-GPU / multi-node: ``torchrun --nproc_per_node=N stages/train_backbone.py``.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-backbone", *sys.argv[1:]]))
