"""DVC stage ``hierarchy``: see ``cdiscount.hierarchy``.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["hierarchy", *sys.argv[1:]]))
