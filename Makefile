# cratedigger: `make demo` (set up + run everything on the sample) and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_USE_LEGACY_KERAS := 1
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: setup demo test test-fast lint ui bench hetrec clean

setup:
	@bash scripts/setup.sh
	@$(VENV)/python -c "import os; from orchestration.settings import load_settings; from orchestration.instance import ensure_dagster_home; ensure_dagster_home(load_settings(), os.environ['DAGSTER_HOME'])"

demo: setup  ## materialise every asset on the built-in sample and print where to look
	$(VENV)/cratedigger run

# DuckDB 2.0's bindings print nanobind reference-leak noise when the interpreter exits; it is
# filtered so that pytest's summary stays the last line (the exit status is pytest's).
QUIET_EXIT := grep --line-buffered -v -E '^(nanobind: | - leaked | - \.\.\. skipped remainder|See https://nanobind)'

test: setup  ## the whole suite, real-data checks included (what CI runs)
	set -o pipefail; $(VENV)/pytest -q 2>&1 | $(QUIET_EXIT)

test-fast: setup  ## skip the slow real-data checks
	set -o pipefail; $(VENV)/pytest -q -m "not slow" 2>&1 | $(QUIET_EXIT)

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

ui: setup  ## the Dagster UI on http://127.0.0.1:3000
	$(VENV)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

hetrec: setup  ## run everything on ../shared/data/hetrec2011-lastfm-2k into data/hetrec
	CRATEDIGGER_SOURCE=hetrec CRATEDIGGER_SOURCE_PATH=$(or $(HETREC),../shared/data/hetrec2011-lastfm-2k) \
	CRATEDIGGER_DATA_DIR=$(CURDIR)/data/hetrec DAGSTER_HOME=$(CURDIR)/data/hetrec/dagster_home \
	$(VENV)/cratedigger run

bench: setup  ## every benchmark; figures land in bench_results/
	@for b in benchmarks/bench_*.py; do m=$$(basename $$b .py); [ $$m = bench_scale ] && continue; echo "== $$m"; $(VENV)/python -m benchmarks.$$m || exit 1; done

clean:
	rm -rf data
