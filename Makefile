# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt | cksum | cut -d' ' -f1)
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: demo demo-backfill test lint bench lock install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	scripts/system-deps.sh
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/python -m devtools.demo

test: install
	scripts/ensure-mariadb.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	scripts/ensure-mariadb.sh
	$(BIN)/python -m bench

# Re-resolve the lock from requirements-dev.txt (PyPI only). uv is used just for resolving.
lock: install
	$(BIN)/python -m pip install --quiet "uv==0.13.8"
	$(BIN)/uv pip compile requirements-dev.txt --python-version 3.11 --no-header --no-annotate -o constraints.txt.new
	(echo "# Full lock of requirements-dev.txt for Python 3.11, from PyPI only. Regenerate with: make lock"; \
	  cat constraints.txt.new) > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) .demo .demo-backfill .pytest_cache .ruff_cache .hypothesis

demo-backfill: install
	$(BIN)/python -m devtools.demo_backfill
