# pangeo-cloud: the two commands people need are `make up` and `make test`.
# Every target installs what it needs first, idempotently, so both work on a
# fresh machine. Tools are built once into $(PANGEO_CACHE_DIR), outside the repo.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PANGEO_CACHE_DIR ?= $(HOME)/.cache/pangeo-cloud
export PANGEO_TOOLS_DIR ?= $(PANGEO_CACHE_DIR)/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(PANGEO_TOOLS_DIR):$(PANGEO_CACHE_DIR)/node/bin:$(PATH)

# Rebuild the virtualenv only when the dependency list changes.
VENV_STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: help install tools objectstore system lint test up validate chart-lock deploy-lock clean

help:
	@echo "make up        run the whole service on this machine (deployment 'local')"
	@echo "make test      install everything needed, then run the whole test suite"
	@echo "make lint      ruff, yamllint, actionlint"
	@echo "make validate  pangeo-cloud validate (all deployments and stages)"
	@echo "make k8s-up    start (or reuse) the loopback Kubernetes control plane; k8s-down stops it"
	@echo "               (options for up: make up UP_ARGS='--port 8001 --data-dir /tmp/pangeo')"

$(VENV_STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(VENV_STAMP)

tools:
	@scripts/install-go-tools.sh

system:
	@scripts/install-system.sh

# MinIO, the S3-compatible store behind the local scratch bucket (built once).
objectstore:
	@scripts/install-objectstore.sh

lint: install tools
	ruff check src tests benchmarks scripts
	ruff format --check src tests benchmarks scripts
	yamllint -s deployments helm-chart/pangeo-cloud/values.yaml helm-chart/support/values.yaml .github .sops.yaml
	actionlint

validate: install tools
	pangeo-cloud validate

# Everything the suite runs for real: Go tools, the loopback Kubernetes control
# plane's binaries (k8s-tools, from scripts/k8s.mk), MinIO, CHP and Chromium.
test: install tools system objectstore k8s-tools
	pytest

up: install tools system objectstore
	pangeo-cloud up $(UP_ARGS)

chart-lock: install
	$(VENV)/bin/python scripts/update-chart-lock.py
	$(VENV)/bin/python scripts/update-chart-lock.py helm-chart/support

# The deploy job's dependencies, pinned with their hashes (pip install --require-hashes):
# pyproject.toml's runtime and build dependencies, resolved for the workflows' Python.
deploy-lock: install
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --build-deps-for wheel --no-emit-index-url --no-emit-find-links \
	  --output-file requirements/deploy.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache helm-chart/pangeo-cloud/charts helm-chart/support/charts

include scripts/k8s.mk
