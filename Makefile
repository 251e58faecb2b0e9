# Everything sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,dask]'
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash samples/demo.sh

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

# The DESIGN.md suite against PyTorch and onnxruntime (2 threads); installs the bench extra first.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/deconv bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
