# mflow developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# byte code now, as a regular install has it (PYTHONDONTWRITEBYTECODE would stop Python
	# from caching it, and every start would compile mflow from source)
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

## run the bundled example flow (state in examples/logs/mflow.db, embedded SQLite)
run: $(STAMP)
	cd examples && ../$(BIN)/mflow --config config.json --taskfile tasks.json

## run the whole test suite
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

## the benchmark suite (~35 min on 2 cores): mflow against make -j2, xargs -P2, doit, Luigi,
## Snakemake and Prefect (installed into bench/.peers-venv*, not into the project), up to
## 100,000 tasks; prints the table and target checks (informational), writes
## bench/results.json, bench/results.md and docs/bench-overhead.png
bench: $(STAMP)
	$(BIN)/python bench/run.py

## the short version (a few minutes): 3 runs, no 100k workloads, no Luigi/Snakemake/Prefect,
## results in bench/results-quick.json only
.PHONY: bench-quick
bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) examples/logs examples/out test-output

## the API and web page at scale: GET /api/runs on 10,000 runs, a 2,000-task run page in chromium
.PHONY: bench-web
bench-web: $(STAMP)
	$(BIN)/python bench/web_bench.py
