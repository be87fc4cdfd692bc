# Everyday commands. `make test` does all the set-up on a fresh machine: virtualenv, services, tests.
SHELL := /bin/bash
VENV = $(shell infra/venv.sh)
PY = $(VENV)/bin/python

.PHONY: venv test test-unit test-fast lint services-up services-down demo bench eval clean

## The platform's main job on the embedded default: ingest the film catalog, serve search and the page.
demo:
	$(VENV)/bin/trawl demo

venv:
	@infra/venv.sh

## Full suite against real services (OpenSearch, Redis, moto), started here and stopped afterwards.
test:
	@infra/run-tests.sh

## Tests that need no service.
test-unit:
	$(PY) -m pytest -m "unit or (contract and not opensearch)" -q

## Whatever is up right now; OpenSearch tests skip when no node answers.
test-fast:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check services indexer tests
	$(VENV)/bin/ruff format --check services indexer tests
	$(VENV)/bin/mypy

services-up:
	@PYTHON=$(PY) infra/services-up.sh

services-down:
	@infra/services-down.sh

## Benchmarks (see docs/benchmarks.md): ingestion, reindex, query latency at 100k items, interaction events,
## recommendations, GC pauses in ranked search.
bench:
	$(VENV)/bin/trawl bench ingest
	$(VENV)/bin/trawl bench reindex
	$(VENV)/bin/trawl bench query
	$(VENV)/bin/trawl bench query --stages fused
	$(VENV)/bin/trawl bench query --think-ms 150 --suggest-requests 500 --requests 200
	$(VENV)/bin/trawl bench events
	$(VENV)/bin/trawl bench recs
	$(VENV)/bin/trawl bench gc

## Evaluations (see docs/evaluation.md): ranking on Cranfield and on the film catalog, recommendations on MovieLens.
eval:
	$(VENV)/bin/trawl eval ranking
	$(VENV)/bin/trawl eval films
	$(VENV)/bin/trawl eval recs

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
