# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-train-quick clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)  # dvc repro, then a table of each stage's wall time, CPU time and peak RSS (tools/stage_times.py)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/stage_times.py --log .dvc/tmp/stage_times.log

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-train-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_train_speed.py --quick

clean-venv:
	rm -rf $(VENV)
