# awp-book: build the book and run all checks on a fresh Debian machine.
#   make book   -> _build/html (AWP_PROFILE=cpu unless set)
#   make test   -> library tests, chapter notebooks at the smoke profile (nbval),
#                  browser check of the smoke-built pages (tests/test_book.py)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp

# Tools from the venv first (jupyter-book's kernel, papermill, ...).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Absolute, so notebooks (executed with their own folder as cwd) find the same data.
export AWP_DATA ?= $(CURDIR)/data

# Chapter notebooks = the .ipynb files listed in _toc.yml (never _build/, runs/, results/).
TOC_NOTEBOOKS = $(PY) -m awp_lib book-pages --list

.PHONY: help venv sysdeps data widgets book test clean distclean

help:
	@echo "make book    build the book into _build/html (AWP_PROFILE=smoke|cpu|paper, default cpu)"
	@echo "make test    run the library tests, the notebooks (smoke) and the browser check"
	@echo "make venv | sysdeps | data | widgets | clean | distclean"

# --- Python environment (stamp: reinstalls only when requirements change) -------------
venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml | sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# benchmark/test peer; --no-deps so that its old pins (requests~=2.25) downgrade nothing
	$(PY) -m pip install --no-deps torchattacks==3.5.1
	touch $@

# --- System packages: Fashion-MNIST, Chromium (browser test), npm (widget JS) ------------
sysdeps:
	@missing=""; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then \
	  echo "sysdeps: ok"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "sysdeps: no apt-get here; install by hand:$$missing"; \
	else \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "sysdeps: apt-get install$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y $$missing \
	    || { $$sudo apt-get update && $$sudo apt-get install -y $$missing; } \
	    || for p in $$missing; do $$sudo apt-get install -y $$p \
	         || echo "sysdeps: $$p not installable here (make data downloads Fashion-MNIST instead)"; done; \
	fi

# --- Fashion-MNIST into $(AWP_DATA)/FashionMNIST/raw ------------------------------------
# (without Debian's package, e.g. on Ubuntu CI runners: downloaded by torchvision)
data: venv sysdeps
	if [ -d /usr/share/datasets/fashion-mnist ]; then $(PY) -m awp_lib data; \
	else $(PY) -m awp_lib data --download fashion-mnist; fi

# --- require.js, html-manager embed-amd.js, MathJax: served by the book (offline) -------
widgets: sysdeps
	bash tools/fetch_widget_js.sh

# --- The book -----------------------------------------------------------------------------
# Sphinx re-executes a notebook only when the notebook itself changed: a change to awp_lib
# or to the profile would leave stale pages. So the build is a stamp per profile on every
# input, and a stale stamp rebuilds everything (--all); an up-to-date one does nothing.
BOOK_PROFILE := $(or $(AWP_PROFILE),cpu)
BOOK_STAMP   := _build/.book-$(BOOK_PROFILE).stamp
BOOK_INPUTS  := _config.yml _toc.yml references.bib tools/widgets-config.js \
                $(wildcard book/*.md book/*.ipynb book/_ext/*.py) \
                $(shell find awp_lib configs -type f \( -name '*.py' -o -name '*.yml' -o -name '*.yaml' -o -name '*.json' \) 2>/dev/null)

book: venv sysdeps data widgets $(BOOK_STAMP)
	@echo "book ($(BOOK_PROFILE)): $(CURDIR)/_build/html/index.html"

# First every run the pages read (awp_lib/book/runlist.py; trained, resumed or skipped, with
# progress), then the pages, which only read finished runs (AWP_BOOK_RUNS=read): executed
# several at a time, one thread each, into the build's jupyter-cache (awp_lib/book/pages.py),
# then rendered from it by jupyter-book.
$(BOOK_STAMP): $(BOOK_INPUTS) $(STAMP) | data widgets
	rm -f _build/.book-*.stamp
	$(PY) -m awp_lib book-runs --profile $(BOOK_PROFILE)
	AWP_PROFILE=$(BOOK_PROFILE) AWP_BOOK_RUNS=read $(PY) -m awp_lib book-pages --profile $(BOOK_PROFILE)
	AWP_PROFILE=$(BOOK_PROFILE) AWP_BOOK_RUNS=read $(VENV)/bin/jupyter-book build --all .
	touch $@

# --- All checks ---------------------------------------------------------------------------
test: venv sysdeps data widgets
	$(PY) -m pytest tests -q
	# the import structure: core, book wing, layers (pyproject.toml)
	$(VENV)/bin/lint-imports
	# the CI workflows (.github/workflows/)
	bash tools/actionlint.sh
	# the chapters as nbval runs them, reading only the listed runs: a page asking for a run
	# missing from awp_lib/book/runlist.py fails here
	$(PY) -m awp_lib book-runs --profile smoke
	AWP_PROFILE=smoke AWP_BOOK_RUNS=read $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env $$($(TOC_NOTEBOOKS))

clean:
	rm -rf _build _build_smoke .pytest_cache .jupyter_cache book/_vendor_js .cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) data
