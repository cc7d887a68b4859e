# genzoo: `make demo` and `make test` work on a fresh machine with Python 3.11 (they create .venv).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GENZOO_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test test-fast browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list or the pins change.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[explorer,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/genzoo demo --out runs/demo

# Debian's chromium for the explorer's browser tests (playwright cannot download browsers here).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: browser tests will be skipped"; \
	else echo "chromium is missing and cannot be installed here (not root): browser tests will be skipped"; fi

test: install browser
	$(BIN)/python -m pytest -q --timeout 900

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
