"""DVC stage ``split``: Product-level stratified train / val split, into data/processed/split.parquet.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI,
so running ``cdiscount split`` by hand does the same thing.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["split", *sys.argv[1:]]))
