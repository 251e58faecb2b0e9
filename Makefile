# Everything sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench bench-batch clean

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
	$(BIN)/vulture  # unused code; settings and the reasons for its exceptions in pyproject.toml
	$(BIN)/lint-imports
	$(BIN)/mypy  # the public API and core/ ([tool.mypy] in pyproject.toml)

# The benchmark suite (deconv bench --list) against PyTorch and onnxruntime (2 threads); installs the bench extra first.
# Run it as a user's machine is: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench`. Some development and
# CI machines set both, which force OpenBLAS onto older kernels; the BLAS line of the output says which kernels ran. This target deliberately leaves the environment as it finds it.
# 15 interleaved rounds per configuration (the command's default is 7): medians on shared cores move less.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/deconv bench --repeat 15

# deconv batch: 1,000 small jobs against a loop of deconv run, per-job overhead, 64 dcgan jobs locally and on Dask.
bench-batch: install
	$(BIN)/python -m deconv_cli.bench.batch

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
