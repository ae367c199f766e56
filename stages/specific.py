"""DVC stage ``specific@<slot>``: train the expert of one group on cached features.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["specific", *sys.argv[1:]]))
