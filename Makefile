# relaycert: every developer and CI entry point.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck docs bench deb wheelhouse clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q monitor checks notifications  # as pip does for an installed package
	touch $(STAMP)

## demo: run relaycert on the built-in demo fleet (loopback only, no setup)
demo: $(STAMP)
	$(BIN)/relaycert demo

## test: the full test suite (Postfix integration tests need Debian's postfix; see .ci/run)
test: $(STAMP)
	$(BIN)/pytest

## check: lint, strict typing and the tests, as CI runs them
check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/layers.py  # the house rules: layers, no circles, SQL in the store, size

typecheck: $(STAMP)
	$(BIN)/mypy

## docs: regenerate docs/rules.md, docs/commands.md, the shell completions and the man page
docs: $(STAMP)
	$(BIN)/python -m monitor.cli.docgen docs
	$(BIN)/python -m monitor.cli.completion monitor/examples/completion

## bench: scan (2000 addresses), daemon (2000 addresses, 6 min) and report (90 days) benchmarks
bench: $(STAMP)
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/daemon.py
	$(BIN)/python bench/report.py

## deb: build dist/relaycert_<version>_<arch>.deb (Debian's dh-virtualenv, debhelper; the
## Python dependencies come from the package index, or only from WHEELHOUSE=DIR when given)
WHEELHOUSE ?=
deb:
	RELAYCERT_WHEELHOUSE=$(abspath $(WHEELHOUSE)) dpkg-buildpackage -us -uc -b
	mkdir -p dist
	mv ../relaycert_*.deb ../relaycert_*.buildinfo ../relaycert_*.changes dist/
	lintian --fail-on error dist/relaycert_*.deb

## wheelhouse: download what the package bundles into .wheelhouse (then: make deb
## WHEELHOUSE=.wheelhouse builds without the network; the package test does)
wheelhouse: $(STAMP)
	$(BIN)/pip download --quiet --dest .wheelhouse --only-binary=:all: 'pip>=23' 'setuptools>=77' wheel
	$(BIN)/pip download --quiet --dest .wheelhouse --prefer-binary '.[postgres]'

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
