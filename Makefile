# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt | cksum | cut -d' ' -f1)
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

E2E_STAMP := $(VENV)/.e2e-$(shell cat requirements*.txt constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo demo-backfill test e2e lint bench lock install clean

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

# Starts private MariaDB servers of its own (never the shared one); 15.1 minutes on a quiet machine
# here (2026-11-22, commit 5645b93), 19.4 at load 2-3; each part's wall time: meta.section_seconds
# in bench/results/latest.json. Figures and goals: docs/performance.md.
# Never part of `make test`.
bench: install
	$(BIN)/python -m bench

# A real deployment on this machine (PostgreSQL, Redis, Celery with two workers, every Airflow
# component, moto, MariaDB), driven through the REST API and Chromium: scripts/e2e/run.sh.
e2e: $(E2E_STAMP)
	scripts/ensure-mariadb.sh
	scripts/e2e/run.sh

$(E2E_STAMP): $(STAMP) requirements-deploy.txt requirements-e2e.txt
	scripts/e2e/system-deps.sh
	$(BIN)/python -m pip install --quiet -r requirements-e2e.txt -c constraints.txt
	rm -f $(VENV)/.e2e-*
	touch $@

# Re-resolve the lock from requirements-dev.txt and requirements-e2e.txt (PyPI only). uv is used just for resolving.
lock: install
	$(BIN)/python -m pip install --quiet "uv==0.13.8"
	$(BIN)/uv pip compile requirements-dev.txt requirements-e2e.txt --python-version 3.11 --no-header --no-annotate \
	  -o constraints.txt.new
	(echo "# Full lock of requirements-dev.txt and requirements-e2e.txt (deployment extras) for Python 3.11, from PyPI only. Regenerate with: make lock"; \
	  cat constraints.txt.new) > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) .demo .demo-backfill .e2e .pytest_cache .ruff_cache .hypothesis

demo-backfill: install
	$(BIN)/python -m devtools.demo_backfill
