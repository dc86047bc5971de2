# Vehicle event jobs. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: help venv azurite test test-spark40 test-fast sdk-livetests lint format run bench outline dist clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[spark,dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its dev extra

# Azurite (Azure Storage emulator, npm) for the Azure-path tests; skipped with a warning without npm.
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob
$(AZURITE):
	@if command -v npm >/dev/null; then \
		npm install --prefix $(VENV)/azurite --no-audit --no-fund --silent azurite@3.37.0; \
	else echo "warning: npm not found: the Azurite tests will be skipped"; fi

azurite: $(AZURITE) ## install Azurite (npm) for the Azure storage tests

# Natural Earth 1:10m countries (npm world-atlas) for the residency outline's build and its test.
WORLD_ATLAS := $(VENV)/world-atlas/node_modules/world-atlas/countries-10m.json
$(WORLD_ATLAS):
	@if command -v npm >/dev/null; then \
		npm install --prefix $(VENV)/world-atlas --no-audit --no-fund --silent world-atlas@2.0.2; \
	else echo "warning: npm not found: the outline's rebuild test will be skipped"; fi

lint: $(STAMP) ## ruff check, ruff format --check and mypy
	$(BIN)/ruff check jobs tests
	$(BIN)/ruff format --check jobs tests
	$(BIN)/python -m mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix jobs tests
	$(BIN)/ruff format jobs tests

# Two workers, whole files each, the longest files first so that neither worker ends alone.
LONGEST := tests/e2e/test_ingest.py tests/e2e/test_cluster.py tests/e2e/test_publish.py \
	tests/e2e/test_eventhubs_source.py tests/e2e/test_deltars_crash.py tests/spark/test_quality.py
test: $(STAMP) $(AZURITE) $(WORLD_ATLAS) lint ## lint, then the whole test suite, then end to end on Spark 4.0
	$(BIN)/python -m pytest -n 2 --dist loadfile $(LONGEST) tests
	$(MAKE) --no-print-directory test-spark40

# Spark 4.0 (Databricks 17.3 LTS): pyspark 4.0 in a second virtualenv whose other packages come
# from .venv; the end-to-end ingest test runs there.
SPARK40 := $(VENV)/spark40
$(SPARK40)/.installed: $(STAMP)
	@test -x $(SPARK40)/bin/python || $(BIN)/python -m venv $(SPARK40)
	$(BIN)/python -c 'import site; print(site.getsitepackages()[0])' > "$$($(SPARK40)/bin/python -c 'import site; print(site.getsitepackages()[0])')/dependencies.pth"
	$(SPARK40)/bin/python -m pip install --quiet --no-deps pyspark==4.0.1
	@touch $@

test-spark40: $(SPARK40)/.installed ## the end-to-end ingest test on pyspark 4.0
	$(SPARK40)/bin/python -c 'import pyspark; assert pyspark.__version__.startswith("4.0."), pyspark.__version__'
	PYSPARK_PYTHON=$(abspath $(SPARK40)/bin/python) PYSPARK_DRIVER_PYTHON=$(abspath $(SPARK40)/bin/python) \
		$(SPARK40)/bin/python -m pytest -p no:cacheprovider tests/e2e/test_crafted_input.py

test-fast: $(STAMP) ## the tests that need no Spark and no services
	$(BIN)/python -m pytest -m "not spark and not slow"

# azure-eventhub's own live tests against the local endpoint on every transport (AMQP, TLS on 5671,
# WebSocket on 443 and 80): not part of `make test`, the suite sleeps for most of an hour. ARGS
# go to pytest, e.g. make sdk-livetests ARGS='livetest/synctests -k websocket'.
sdk-livetests: $(STAMP) ## azure-eventhub's own live tests against the local endpoint (about an hour)
	tests/sdk_live/run.sh $(ARGS)

run: $(STAMP) ## end to end: local Event Hubs, a simulated fleet (50k events), ingest, summary
	$(BIN)/python -m jobs run

bench: $(STAMP) ## benchmarks, printed as ratios against a baseline measured in the same run
	$(BIN)/python -m jobs bench

outline: $(STAMP) $(WORLD_ATLAS) ## rebuild the residency outline (jobs/stages/residency/mainland_china.geojson)
	$(BIN)/python -m jobs outline --world $(WORLD_ATLAS)

dist: $(STAMP) ## build the wheel and the sdist into dist/ (schemas, suites, outline and jar inside), and the jar
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -c 'import shutil, jobs.jvm; shutil.copy(jobs.jvm.jar(), "dist")'  # for --jars and Databricks

clean: ## remove the virtualenv, caches and local run output
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache lake .run simulated spark-warehouse metastore_db derby.log *.egg-info build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
