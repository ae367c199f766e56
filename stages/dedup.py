"""DVC stage ``dedup``: Exact duplicate pictures and the test -> train lookup, into data/processed/dedup.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI,
so running ``cdiscount dedup`` by hand does the same thing.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["dedup", *sys.argv[1:]]))
