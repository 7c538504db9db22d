# Everything a fresh machine needs: `make demo` runs the pipeline, `make test` the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	# HOTA for the tracking evaluation. --no-deps: it declares opencv-python, which would
	# replace the headless OpenCV; everything it really imports is installed above.
	$(BIN)/python -m pip install --no-deps trackeval==1.3.0
	touch $(STAMP)

DURATION ?= 30
demo: $(STAMP)
	$(BIN)/perception demo --duration $(DURATION) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check perception nodes tests
	$(BIN)/ruff format --check perception nodes tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/perception bench bus

clean:
	rm -rf $(VENV) out
