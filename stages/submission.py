"""DVC stage ``submission``: see ``cdiscount.submission``.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":
    sys.exit(main(["submission", *sys.argv[1:]]))
