# The two commands of the README:  make serve   |   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench install install-dev system-deps ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Install and serve the example agents on http://127.0.0.1:8123 (config.yaml).
serve: install
	$(BIN)/gateway serve

## Debian packages the browser and nginx tests drive (installed when running as root).
system-deps:
	@missing=""; \
	[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing="$$missing nginx"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "note: missing$$missing (not root): the browser/nginx tests will skip"; fi

## Install with the dev extra, lint, type-check and run every test (Python, Node, browser, nginx).
test: install-dev system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

## Rebuild the chat page (ui/dist is committed, so serving needs no Node).
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

## The benchmark (prints a table, writes bench/results/*.json).
bench: install-dev
	$(BIN)/python -m bench
