"""DVC stage ``sample``: Generate the embedded mini-Cdiscount sample into data/raw/sample.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI,
so running ``cdiscount sample`` by hand does the same thing.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
