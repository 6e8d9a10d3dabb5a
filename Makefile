# The two commands a newcomer needs: `make demo` and `make test`. Everything else is optional;
# `make help` lists it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?= --speed 1800
BENCH_ARGS ?=

.PHONY: help install demo test test-unit test-integration lint typecheck check stack-up stack-down status validate bench bench-sim bench-queries bench-broker screenshot clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 20

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its test tools

demo: $(STAMP)  ## start the embedded stack and stream a simulated hospital into PostgreSQL (Ctrl-C stops)
	$(BIN)/hospital-stream run $(DEMO_ARGS)

test: $(STAMP)  ## the whole suite: unit tests, then integration tests on the real embedded stack
	$(BIN)/pytest

test-unit: $(STAMP)  ## the fast pure tests only
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)  ## the tests that start the real broker and PostgreSQL
	$(BIN)/pytest tests/integration

lint: $(STAMP)  ## ruff (rules and format) and the import contracts
	$(BIN)/ruff check hospital_stream tests benchmarks scripts docs
	$(BIN)/ruff format --check hospital_stream tests benchmarks scripts docs
	$(BIN)/lint-imports

typecheck: $(STAMP)  ## mypy: strict on the core (model, schema, wire, table rules, sink, dashboard panels), default on the rest
	$(BIN)/mypy --strict hospital_stream/model hospital_stream/sim.py hospital_stream/schema.py hospital_stream/wire hospital_stream/stream/rules.py hospital_stream/sink hospital_stream/web/panels.py hospital_stream/web/page.py
	$(BIN)/mypy hospital_stream

check: lint typecheck test  ## what CI runs: lint, type check, then the whole suite

stack-up: $(STAMP)  ## start the embedded broker and PostgreSQL in the background
	$(BIN)/hospital-stream stack up

stack-down: $(STAMP)  ## stop them
	$(BIN)/hospital-stream stack down

status: $(STAMP)  ## what is stored so far
	$(BIN)/hospital-stream status

validate: $(STAMP)  ## check the stored data's invariants
	$(BIN)/hospital-stream validate

bench: $(STAMP)  ## the pipeline at max speed against a bare COPY of its rows, stages, memory, latency (BENCH_ARGS="--days 300")
	$(BIN)/python -m benchmarks.bench_e2e $(BENCH_ARGS)

bench-sim: $(STAMP)  ## time the simulator against a bare PostgreSQL COPY of its rows (BENCH_ARGS="--days 60")
	$(BIN)/python -m benchmarks.bench_sim $(BENCH_ARGS)

bench-queries: $(STAMP)  ## time every validate check and dashboard read on HOSPITAL_DATABASE_URL (BENCH_ARGS="--from 800")
	$(BIN)/python -m benchmarks.bench_queries $(BENCH_ARGS)

bench-broker: $(STAMP)  ## batch chunks through the embedded broker: none, protocol and payload compression (BENCH_ARGS="--days 20")
	$(BIN)/python -m benchmarks.bench_broker $(BENCH_ARGS)

screenshot: $(STAMP)  ## regenerate docs/dashboard.png: a short run on a fresh embedded stack, shot by headless Chromium
	$(BIN)/python docs/screenshot.py

clean:  ## remove the virtual environment (keeps the data in .hospital/)
	rm -rf $(VENV) *.egg-info
