"""DVC stage ``ensemble``: see ``cdiscount.ensemble``.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["ensemble", *sys.argv[1:]]))
