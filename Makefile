# ContextRT: two set-up commands for a fresh machine.
#   make demo   install everything, build the frontend, migrate, load the synthetic demo cohort,
#               start the portal on 127.0.0.1:8000 with an in-process worker
#   make test   install everything and run the whole suite (embedded default, then PostgreSQL)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false


.PHONY: demo test lint install frontend services chromium migrate demo-data serve clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

frontend/dist/.built: $(shell find frontend -path frontend/node_modules -prune -o -path frontend/dist -prune -o -type f -print 2>/dev/null)
	@if [ -f frontend/package.json ]; then \
		cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build && touch dist/.built; \
	else mkdir -p frontend/dist && touch frontend/dist/.built; fi

frontend: frontend/dist/.built

services:
	bash scripts/ensure_services.sh

chromium:
	bash scripts/ensure_chromium.sh

migrate: install
	$(PY) manage.py migrate --noinput

demo-data: migrate
	$(PY) manage.py load_demo

demo: install frontend migrate demo-data
	$(PY) manage.py collectstatic --noinput >/dev/null
	$(PY) manage.py serve_demo --host 127.0.0.1 --port 8000

test: install frontend services chromium
	bash scripts/run_tests.sh

# Also the first step of `make test` (scripts/run_tests.sh): rules in ruff.toml.
lint: install
	$(PY) -m ruff check .

clean:
	rm -rf var frontend/dist test-artifacts
