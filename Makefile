# One-command setup, pipeline, tests and benchmarks. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test bench bench-scale report ocr-engine clean-venv

## setup: create .venv, install the package (editable, pinned deps) and the OCR engine. Idempotent.
setup: $(VENV)/.installed ocr-engine

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## ocr-engine: Debian's tesseract with French, installed when root, else the command is printed.
ocr-engine:
	@if command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx fra; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-fra >/dev/null; \
	else \
	  echo "OCR engine missing; run: sudo apt-get install -y tesseract-ocr tesseract-ocr-fra"; \
	fi

## repro: build the whole pipeline (embedded sample by default).
repro: setup
	dvc repro

## test: the test suite (what CI runs).
test: setup
	python -m pytest

## bench: benchmarks, printing measured ratios.
bench: setup
	python bench/decode.py
	python bench/train.py
	python bench/ensemble.py

## report: offline report of the current run: reports/report.md + self-contained reports/report.html.
report: setup
	cdiscount report

clean-venv:
	rm -rf $(VENV)

## bench-scale: the real-scale benchmark (bench/scale.py): FRACTIONS of the real counts, in temporary copies.
FRACTIONS ?= 0.003 0.01 0.03
bench-scale: setup
	python bench/scale.py $(FRACTIONS)
