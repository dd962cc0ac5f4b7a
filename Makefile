# tradekernel developer entry points. Everything runs from ./.venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Coverage gates (DEVELOPERS.md): machines/ and storage/ >= 90% branch coverage, everything >= 85%.
COV_CORE    := 90
COV_OVERALL := 85

.PHONY: run test lint typecheck unit bench bench-reconcile soak docs clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("tradekernel needs Python >= 3.11" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## run: paper-trade against the embedded venue with a live status view (Ctrl-C stops; ARGS="..." adds options)
run: $(STAMP)
	$(BIN)/tradekernel run $(ARGS)

## lint: ruff (lint + format check) over the code, tests and benchmarks
lint: $(STAMP)
	$(BIN)/ruff check kernel machines storage tests benchmarks
	$(BIN)/ruff format --check kernel machines storage tests benchmarks

## typecheck: mypy --strict on the kernel shell, the pure core and the journal
typecheck: $(STAMP)
	$(BIN)/mypy kernel machines storage

## unit: the whole test suite with the coverage gates
unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov --cov-report= -p no:cacheprovider
	$(BIN)/coverage combine --quiet || true
	$(BIN)/coverage report --include='machines/*,storage/*' --fail-under=$(COV_CORE)
	$(BIN)/coverage report --fail-under=$(COV_OVERALL)

## test: what CI runs: lint, type checks, the whole suite with coverage gates
test: lint typecheck unit

## bench: performance figures as JSON lines, each next to a raw baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python benchmarks/journal.py
	$(BIN)/python benchmarks/verify.py
	$(BIN)/python benchmarks/orders.py
	$(BIN)/python benchmarks/roundtrip.py
	$(BIN)/python benchmarks/feed.py
	$(BIN)/python benchmarks/feed_decoders.py
	$(BIN)/python benchmarks/venue_books.py
	$(BIN)/python benchmarks/tick_to_order.py
	$(BIN)/python benchmarks/tick_loopback.py
	$(BIN)/python benchmarks/resume.py
	$(BIN)/python benchmarks/risk.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/fleet.py

## soak: a 10-minute order flood; RSS must stay within 10% of its first-minute value (ARGS="--seconds 120")
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(ARGS)

## bench-reconcile: reconciliation against a venue with 500k fills and 200k open orders (~2 min, apart from bench)
bench-reconcile: $(STAMP)
	$(BIN)/python benchmarks/reconcile_large.py

## docs: regenerate the generated blocks of docs/machines/*.md from the machine tables
docs: $(STAMP)
	$(BIN)/tradekernel diagram --update-docs docs/machines

clean:
	rm -rf $(VENV) .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache *.egg-info
