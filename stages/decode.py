"""DVC stage ``decode``: Index the Kaggle BSON files of params data.raw_dir into data/interim.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI,
so running ``cdiscount decode`` by hand does the same thing.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["decode", *sys.argv[1:]]))
