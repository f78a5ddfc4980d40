# Two entry points, both safe on a fresh machine:
#   make demo   creates .venv, installs faceprior, restores the bundled example photos into results/
#   make test   creates .venv if needed and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned to the CPU build that installs offline here; any torch >= 2.1 works for users.
TORCH  ?= torch==2.13.0

.PHONY: setup demo serve test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,eval,onnx,video,serve,ray]"
	touch $@

# The demo's own output folder: earlier demo results there are replaced (--overwrite); examples/ is never written.
demo: setup
	$(BIN)/faceprior restore examples -o results --overwrite --save-compare

# The web page and HTTP API on http://127.0.0.1:8000 (Ctrl-C stops it).
serve: setup
	$(BIN)/faceprior serve

# ruff: pyflakes and pycodestyle errors (pyproject.toml); tools/check_layers.py runs inside the tests.
test: setup
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q

# Everyday work: everything but the tests marked slow (well under 90 s on a 2-core CPU).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) results .pytest_cache
