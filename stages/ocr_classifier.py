"""DVC stage ``ocr_classifier``: see ``cdiscount.ocr.stage``.

Thin on purpose: reads params.yaml and calls the library through the ``cdiscount`` CLI.
"""
import sys

from cdiscount.cli import main

if __name__ == "__main__":  # also required by the OCR worker processes (forkserver re-imports this file)
    sys.exit(main(["ocr-classifier", *sys.argv[1:]]))
