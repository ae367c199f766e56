"""DVC stage ``groups``: which sets of categories get a specific classifier.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["groups", *sys.argv[1:]]))
