# kdinterp: the two commands a reviewer needs are `make repro` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# What the targets below need before they run kdinterp: the venv (the container has its own: VENV_DEP=).
VENV_DEP ?= $(STAMP)
PARAMS := params.yaml
PROFILE ?=
WORLD_DIR := data/concept_world

# Telemetry off everywhere (DVC, Great Expectations).
export DVC_NO_ANALYTICS := 1
export ITERATIVE_DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
# DVC stages call `kdinterp`, which lives in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv data repro pull publish container container-check test lint lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv from requirements.lock (plain pip; torch comes from local disk)

$(STAMP): requirements.lock pyproject.toml
	@if ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "error: $(PYTHON) is $$($(PYTHON) --version); kdinterp needs Python >= 3.11 (set PYTHON=python3.11)" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-input -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-input --no-deps --no-build-isolation -e .
	touch $@

data: $(VENV_DEP)  ## generate the concept world into data/ if it is missing (tracked by data.dvc); not when data.world_file is null
	@world=$$(python -c 'from kdinterp.measures.registry import load_params; print(load_params("$(PARAMS)").data.world_file or "")'); \
	if [ -z "$$world" ]; then echo "data.world_file is null (not the concept world, e.g. PROFILE=paper): nothing to generate"; \
	elif [ -f $(WORLD_DIR)/world.json ]; then echo "$(WORLD_DIR) present: keeping it (delete data/ to regenerate)"; \
	else kdinterp world generate --params $(PARAMS) --out $(WORLD_DIR); \
	  dvc commit --force --quiet data.dvc; \
	  git diff --quiet -- data.dvc 2>/dev/null || echo "note: data/ differs from the committed data.dvc (other params" \
	    "or library versions?); data.dvc now records the new hash and dvc repro reruns what depends on it" >&2; fi

repro: $(VENV_DEP)  ## run the whole study (dvc repro) on the embedded concept world; PROFILE=seeds5|all_students|dose_response|paper merges a profile
	@if [ -n "$(PROFILE)" ]; then kdinterp profile $(PROFILE) --params $(PARAMS); fi
	@$(MAKE) --no-print-directory data VENV_DEP=$(VENV_DEP)
	@kdinterp repair-lock  # an interrupted dvc repro can leave dvc.lock empty (src/kdinterp/workflow/lockfile.py)
	dvc repro
	@echo; awk '/^## /{p = ($$0 ~ /^## (Control ladder|Paper predictions)/)} /^### /{p = 0} p' \
	  paper_figures/REPRODUCTION.md | grep -v '^!\['
	@echo "Full report: paper_figures/REPRODUCTION.md; all metrics: dvc metrics show"

pull: $(VENV_DEP)  ## fetch the published study from the DVC remote (set its URL first, see README); nothing retrains
	kdinterp pull

publish: $(VENV_DEP)  ## push data, models, dissections, report and run-cache to the DVC remote, and check it holds them all
	kdinterp publish

container:  ## the image's default command: pull if the remote's URL is set, make data/ if missing, dvc repro
	kdinterp pull --if-set
	$(MAKE) repro VENV_DEP=

container-check:  ## build the image with podman and try it (about 7 GB; 15-24 min on 2 cores; not in CI; scripts/container-check)
	scripts/container-check

# Two pytest-xdist workers of one thread each, beside the tiny study's build (tests/study_build.py): on 2 cores,
# processes of 2 OpenMP threads each spin against one another (research/ecosystem.md).
TEST_WORKERS ?= 2
test: $(STAMP)  ## run the test suite (CPU, a few minutes)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/python -m pytest -n $(TEST_WORKERS)

lint: $(STAMP)  ## lint the Dockerfile with hadolint
	$(VENV)/bin/hadolint Dockerfile

lock:  ## re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[test]'
	{ head -n 2 requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^kdinterp'; \
	  .lock-venv/bin/pip freeze --all | grep '^setuptools=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean:  ## remove stage outputs (not data/, not .venv)
	rm -rf outputs
